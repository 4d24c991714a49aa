use netdsl::network;

network! {
    /// `kdim` is a memory's width; self-attention has no memory.
    pub Encoder(x: [B, 10, 64]) {
        x -> attn: MultiHeadAttention(heads = 4, kdim = 32)
    }
}

fn main() {}
