use netdsl::network;

network! {
    /// The decoder is 256 wide, the encoder's memory 512.
    pub Decoder(tgt: [B, T, 256], memory: [B, S, 512]) -> [B, T, 256] {
        tgt -> cross: MultiHeadAttention(heads = 8, memory = memory)
    }
}

fn main() {}
