use netdsl::network;

network! {
    /// LeNet-5's first Linear written for 28x28 digits (16*4*4) on 32x32 ones.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)
          -> flatten -> fc1: Linear(256 -> 120) -> relu
          -> fc2: Linear(84) -> relu -> fc3: Linear(10)
    }
}

fn main() {}
