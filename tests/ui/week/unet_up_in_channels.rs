use netdsl::network;

network! {
    /// The up-convolution written for the channels before the bottleneck.
    pub UNet(x: [B, 3, 64, 64]) {
        x -> enc: Conv2d(64, kernel = 3, padding = 1) -> max_pool(2)
          -> mid: Conv2d(128, kernel = 3, padding = 1) -> relu
          -> up: ConvTranspose2d(64 -> 64, kernel = 2, stride = 2)
    }
}

fn main() {}
