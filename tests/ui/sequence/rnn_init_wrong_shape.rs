use netdsl::network;

network! {
    /// The encoder has two layers, the decoder one: its initial states
    /// hold one layer's worth.
    pub Seq2Seq(x: [B, T, 16]) -> [B, T, 32] {
        let (_, (h, c)) = x -> enc: LSTM(32, layers = 2);
        x -> dec: LSTM(32, init = (h, c))
    }
}

fn main() {}
