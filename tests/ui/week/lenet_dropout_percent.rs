use netdsl::network;

network! {
    /// Dropout written as a percentage.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5) -> relu -> max_pool(2)
          -> flatten -> fc1: Linear(120) -> relu -> Dropout(50) -> fc2: Linear(10)
    }
}

fn main() {}
