use netdsl::network;

network! {
    /// Three shapes declared, two outputs given.
    pub Encoder(x: [B, T, 16]) -> ([B, T, 32], [1, B, 32], [1, B, 32]) {
        let (y, (h, _)) = x -> lstm: LSTM(32);
        (y, h)
    }
}

fn main() {}
