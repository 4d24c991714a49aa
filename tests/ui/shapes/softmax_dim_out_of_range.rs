use netdsl::network;

network! {
    pub Net(x: [B, 784]) -> [B, 10] {
        x -> fc1: Linear(10) -> Softmax(dim = 2)
    }
}

fn main() {}
