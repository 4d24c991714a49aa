use netdsl::network;

network! {
    /// `stride = true` for a downsampling convolution.
    pub ResNet(x: [B, 64, 56, 56]) {
        x -> conv: Conv2d(128, kernel = 3, stride = true, padding = 1)
    }
}

fn main() {}
