use netdsl::network;

network! {
    /// conv2's input channels copied from its output.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(1 -> 6, kernel = 5) -> relu -> max_pool(2)
          -> conv2: Conv2d(16 -> 16, kernel = 5) -> relu -> max_pool(2)
          -> flatten -> fc1: Linear(120) -> relu -> fc2: Linear(84) -> relu -> fc3: Linear(10)
    }
}

fn main() {}
