use netdsl::network;

network! {
    /// The LSTM is written for 8 features, but the embedding gives 12.
    pub Tagger(ids: [B, T] u32) -> [B, T, 5] {
        ids -> emb: Embedding(100, 12) -> lstm: LSTM(8 -> 32) -> fc: Linear(5)
    }
}

fn main() {}
