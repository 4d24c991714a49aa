use netdsl::network;

network! {
    /// An output padding as large as the stride.
    pub UNet(x: [B, 3, 64, 64]) {
        x -> enc: Conv2d(64, kernel = 3, stride = 2, padding = 1)
          -> up: ConvTranspose2d(32, kernel = 3, stride = 2, padding = 1, output_padding = 2)
    }
}

fn main() {}
