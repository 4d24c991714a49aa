use netdsl::network;

network! {
    /// The input's shape is missing: the first layer says what it is.
    pub Mlp(x) -> [B, 10] {
        x -> fc1: Linear(784 -> 128) -> relu -> fc2: Linear(10)
    }
}

fn main() {}
