use netdsl::network;

network! {
    /// Both a scale factor and a size.
    pub UNet(x: [B, 8, 32, 32]) {
        x -> Upsample(scale_factor = 2, size = (64, 64)) -> conv: Conv2d(8, kernel = 3, padding = 1)
    }
}

fn main() {}
