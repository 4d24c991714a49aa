use netdsl::network;

network! {
    pub Net(x: [B, 784]) {
        x -> fc1: Linear(10) -> relu(true)
    }
}

fn main() {}
