use netdsl::network;

network! {
    pub Net(ids: [B, T] u32) {
        ids -> emb: Embedding(100, 16, padding_idx = 100)
    }
}

fn main() {}
