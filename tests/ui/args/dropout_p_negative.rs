use netdsl::network;

network! {
    pub Net(x: [B, 784]) {
        x -> fc1: Linear(128) -> Dropout(p = -0.1)
    }
}

fn main() {}
