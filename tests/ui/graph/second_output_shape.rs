use netdsl::network;

network! {
    /// The final state of a 2-layer GRU is [2, B, 32], not [B, 32].
    pub Encoder(x: [B, T, 16]) -> ([B, T, 32], [B, 32]) {
        let (y, h) = x -> gru: GRU(32, layers = 2);
        (y, h)
    }
}

fn main() {}
