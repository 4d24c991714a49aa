use netdsl::network;

network! {
    /// `flatten` before the second convolution.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5) -> relu -> max_pool(2) -> flatten
          -> conv2: Conv2d(16, kernel = 5) -> relu -> fc: Linear(10)
    }
}

fn main() {}
