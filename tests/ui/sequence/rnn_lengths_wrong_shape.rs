use netdsl::network;

network! {
    /// Lengths are one per sequence: `[B]`, not `[B, T]`.
    pub Tagger(x: [B, T, 16], lengths: [B, T] u32) -> [B, T, 32] {
        x -> lstm: LSTM(32, lengths = lengths)
    }
}

fn main() {}
