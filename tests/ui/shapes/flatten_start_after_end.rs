use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> flatten(start_dim = 3, end_dim = 1)
    }
}

fn main() {}
