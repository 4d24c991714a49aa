use netdsl::network;

network! {
    /// Keras's `Dense` for the classifier.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5) -> relu -> max_pool(2) -> flatten -> fc: Dense(10)
    }
}

fn main() {}
