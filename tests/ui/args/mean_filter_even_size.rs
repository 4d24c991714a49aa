use netdsl::network;

network! {
    pub Net(x: [B, 1, 32, 32]) {
        x -> MeanFilter((4, 3))
    }
}

fn main() {}
