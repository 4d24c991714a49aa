use netdsl::network;

network! {
    /// The segmentation head left at the decoder's width.
    pub UNet(x: [B, 3, 64, 64]) -> [B, 2, 64, 64] {
        x -> enc: Conv2d(64, kernel = 3, padding = 1) -> relu
          -> head: Conv2d(64, kernel = 1)
    }
}

fn main() {}
