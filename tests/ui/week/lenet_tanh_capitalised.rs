use netdsl::network;

network! {
    /// `TanH`, as some papers write it.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5) -> TanH -> avg_pool(2) -> flatten -> fc: Linear(10)
    }
}

fn main() {}
