use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> max_pool
    }
}

fn main() {}
