use netdsl::network;

network! {
    pub Net(x: [B, 3, 4, 4]) {
        x -> max_pool(2) -> max_pool(3)
    }
}

fn main() {}
