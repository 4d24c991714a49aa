use netdsl::network;

network! {
    pub Net(x: [B, 1, 32, 32]) {
        x -> Filter(((1, 2, 1), (0, 0)))
    }
}

fn main() {}
