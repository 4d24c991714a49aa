use netdsl::network;

network! {
    pub Net(x: [B, 784]) {
        x -> fc1: Linear(128) -> Dropout(1.5)
    }
}

fn main() {}
