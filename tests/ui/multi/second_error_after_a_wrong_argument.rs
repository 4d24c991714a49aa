use netdsl::network;

network! {
    /// A zero kernel in conv1, and fc2 written for 100 features where fc1
    /// gives 120: conv1's wrong argument does not hide fc2's mistake.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 0) -> relu -> max_pool(2)
          -> conv2: Conv2d(6 -> 16, kernel = 5) -> bn: BatchNorm2d(16) -> relu -> max_pool(2)
          -> flatten -> fc1: Linear(400 -> 120) -> relu -> fc2: Linear(100 -> 84) -> fc3: Linear(10)
    }
}

fn main() {}
