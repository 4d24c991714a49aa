use netdsl::network;

network! {
    /// The original U-Net's decoder joins a 64x64 skip to a 56x56 up-sampling.
    pub UNet(x: [B, 1, 68, 68]) {
        let skip = x -> enc1: Conv2d(64, kernel = 3) -> relu -> enc2: Conv2d(64, kernel = 3) -> relu;
        let up = skip -> max_pool(2) -> mid1: Conv2d(128, kernel = 3) -> relu
          -> mid2: Conv2d(128, kernel = 3) -> relu -> up: ConvTranspose2d(64, kernel = 2, stride = 2);
        cat(skip, up, dim = 1) -> dec: Conv2d(64, kernel = 3)
    }
}

fn main() {}
