use netdsl::network;

network! {
    /// An LSTM's states are a pair: `(y, (h, c))`, not `(y, h, c)`.
    pub Encoder(x: [B, T, 16]) -> [1, B, 32] {
        let (y, h, c) = x -> lstm: LSTM(32);
        h
    }
}

fn main() {}
