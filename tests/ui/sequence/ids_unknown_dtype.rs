use netdsl::network;

network! {
    pub Net(ids: [B, T] f16) {
        ids -> emb: Embedding(100, 16)
    }
}

fn main() {}
