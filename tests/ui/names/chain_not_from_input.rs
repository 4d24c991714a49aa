use netdsl::network;

network! {
    pub Net(x: [B, 784]) {
        input -> fc1: Linear(10)
    }
}

fn main() {}
