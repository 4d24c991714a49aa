use netdsl::network;

network! {
    /// Cropping the smaller map to the larger one.
    pub UNet(x: [B, 1, 64, 64]) {
        let skip = x -> enc: Conv2d(8, kernel = 3);
        let up = skip -> max_pool(2) -> mid: Conv2d(8, kernel = 3) -> up: ConvTranspose2d(8, kernel = 2, stride = 2);
        cat(crop(up, like = skip), up, dim = 1)
    }
}

fn main() {}
