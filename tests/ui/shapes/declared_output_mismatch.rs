use netdsl::network;

network! {
    pub Net(x: [B, 784]) -> [B, 10] {
        x -> fc1: Linear(128) -> relu -> fc2: Linear(100)
    }
}

fn main() {}
