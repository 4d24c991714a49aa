use netdsl::network;

network! {
    /// An LSTM starts from two states, `(h0, c0)`.
    pub Seq2Seq(x: [B, T, 16]) -> [B, T, 32] {
        let (_, (h, _)) = x -> enc: LSTM(32);
        x -> dec: LSTM(32, init = h)
    }
}

fn main() {}
