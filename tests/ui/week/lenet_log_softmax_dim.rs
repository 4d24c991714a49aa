use netdsl::network;

network! {
    /// LogSoftmax over a dim the logits do not have.
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> flatten -> fc1: Linear(120) -> relu -> fc2: Linear(10) -> LogSoftmax(dim = 2)
    }
}

fn main() {}
