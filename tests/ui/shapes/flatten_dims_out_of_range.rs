use netdsl::network;

network! {
    pub Net(x: [B, 784]) {
        x -> flatten(start_dim = 1, end_dim = 3)
    }
}

fn main() {}
