use netdsl::network;

network! {
    /// A mask over 12 keys for a memory of 10.
    pub Decoder(tgt: [B, 8, 64], memory: [B, 10, 64], m: [8, 12] u8) -> [B, 8, 64] {
        tgt -> cross: MultiHeadAttention(heads = 4, memory = memory, mask = m)
    }
}

fn main() {}
