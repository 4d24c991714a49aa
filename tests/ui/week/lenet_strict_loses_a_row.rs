use netdsl::network;

network! {
    /// A strict LeNet at 30x30: the second pool leaves a row out.
    #[netdsl(strict)]
    pub LeNet(x: [B, 1, 30, 30]) {
        x -> conv1: Conv2d(6, kernel = 5) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2) -> flatten
    }
}

fn main() {}
