use netdsl::network;

network! {
    pub Net(x: [B, 784], y: [B, 10]) {
        x -> fc1: Linear(10)
    }
}

fn main() {}
