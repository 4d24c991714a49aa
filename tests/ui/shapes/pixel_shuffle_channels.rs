use netdsl::network;

network! {
    pub Upscale(x: [B, 3, 16, 16]) {
        x -> conv: Conv2d(10, kernel = 3, padding = 1) -> PixelShuffle(2)
    }
}

fn main() {}
