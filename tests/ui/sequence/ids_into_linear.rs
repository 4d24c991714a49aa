use netdsl::network;

network! {
    pub Net(ids: [B, T] u32) {
        ids -> fc: Linear(8)
    }
}

fn main() {}
