use netdsl::network;

network! {
    /// Key lengths are one per sequence, `[B]`.
    pub Encoder(x: [B, T, 64], lens: [B, 1] u32) -> [B, T, 64] {
        x -> attn: MultiHeadAttention(heads = 4, key_lengths = lens)
    }
}

fn main() {}
