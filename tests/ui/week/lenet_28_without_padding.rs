use netdsl::network;

network! {
    /// The 32x32 LeNet run on 28x28 MNIST without conv1's padding of 2.
    pub LeNet(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)
          -> flatten -> fc1: Linear(400 -> 120) -> relu
          -> fc2: Linear(84) -> relu -> fc3: Linear(10)
    }
}

fn main() {}
