use netdsl::network;

network! {
    /// conv2 written for 8 input channels and fc2 for 100 features: both reported in one build.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5) -> relu -> max_pool(2)
          -> conv2: Conv2d(8 -> 16, kernel = 5) -> relu -> max_pool(2)
          -> flatten -> fc1: Linear(120) -> relu -> fc2: Linear(100 -> 84) -> fc3: Linear(10)
    }
}

fn main() {}
