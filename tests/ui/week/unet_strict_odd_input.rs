use netdsl::network;

network! {
    /// A strict U-Net at 100x100: the third pool drops a row.
    #[netdsl(strict)]
    pub UNet(x: [B, 1, 100, 100]) {
        x -> c1: Conv2d(16, kernel = 3, padding = 1) -> max_pool(2)
          -> c2: Conv2d(32, kernel = 3, padding = 1) -> max_pool(2)
          -> c3: Conv2d(64, kernel = 3, padding = 1) -> max_pool(2)
    }
}

fn main() {}
