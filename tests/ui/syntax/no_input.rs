use netdsl::network;

network! {
    pub Tagger() -> [B, T, 5] {
        ids -> emb: Embedding(100, 16) -> fc: Linear(5)
    }
}

fn main() {}
