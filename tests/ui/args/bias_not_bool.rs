use netdsl::network;

network! {
    pub Net(x: [B, 784]) {
        x -> fc1: Linear(10, bias = 0)
    }
}

fn main() {}
