use netdsl::network;

network! {
    /// A padded U-Net that forgets to up-sample before joining.
    pub UNet(x: [B, 3, 64, 64]) {
        let skip = x -> enc: Conv2d(32, kernel = 3, padding = 1) -> relu;
        let deep = skip -> max_pool(2) -> mid: Conv2d(64, kernel = 3, padding = 1) -> relu;
        cat(skip, deep, dim = 1) -> out: Conv2d(2, kernel = 1)
    }
}

fn main() {}
