use netdsl::network;

network! {
    pub Net(ids: [B, T] u32) {
        let e = ids -> emb: Embedding(10, 4);
        cat(ids, e, dim = 1)
    }
}

fn main() {}
