use netdsl::network;

network! {
    /// The head left at CIFAR-100's 100 classes.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5) -> relu -> max_pool(2)
          -> flatten -> fc1: Linear(120) -> relu -> fc2: Linear(100)
    }
}

fn main() {}
