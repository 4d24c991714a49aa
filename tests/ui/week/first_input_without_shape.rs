use netdsl::network;

network! {
    /// LeNet's input named, its shape forgotten.
    pub LeNet(x) -> [B, 10] {
        x -> conv1: Conv2d(1 -> 6, kernel = 5) -> relu -> flatten -> fc: Linear(10)
    }
}

fn main() {}
