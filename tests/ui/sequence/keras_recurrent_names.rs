use netdsl::network;

network! {
    /// Keras's `SimpleRNN` is `RNN`; Flax's `Embed` is `Embedding`.
    pub Tagger(ids: [B, T] u32) -> [B, T, 5] {
        ids -> emb: Embed(100, 16) -> rnn: SimpleRNN(32) -> fc: Linear(5)
    }
}

fn main() {}
