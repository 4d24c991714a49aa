use netdsl::network;

network! {
    /// The final hidden state is [layers, B, H], not a sequence [B, T, H]:
    /// adding it to the output does not broadcast.
    pub Net(x: [B, 7, 16]) -> [B, 7, 32] {
        let (y, h) = x -> gru: GRU(32, layers = 2);
        y + h
    }
}

fn main() {}
