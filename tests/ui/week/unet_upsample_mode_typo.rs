use netdsl::network;

network! {
    /// `mode = bilinar`.
    pub UNet(x: [B, 8, 32, 32]) {
        x -> Upsample(scale_factor = 2, mode = bilinar) -> conv: Conv2d(8, kernel = 3, padding = 1)
    }
}

fn main() {}
