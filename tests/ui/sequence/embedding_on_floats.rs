use netdsl::network;

network! {
    pub Net(x: [B, T, 8]) {
        x -> emb: Embedding(100, 16)
    }
}

fn main() {}
