use netdsl::network;

network! {
    /// A bidirectional LSTM gives 2 * 32 features; the head expects 32.
    pub Tagger(x: [B, T, 16]) -> [B, T, 5] {
        x -> lstm: LSTM(32, bidirectional = true) -> fc: Linear(32 -> 5)
    }
}

fn main() {}
