use netdsl::network;

network! {
    /// A pooling stride of 0.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5) -> tanh -> avg_pool(2, stride = 0)
          -> flatten -> fc: Linear(10)
    }
}

fn main() {}
