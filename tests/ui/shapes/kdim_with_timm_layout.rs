use netdsl::network;

network! {
    /// timm's fused `qkv` cannot read a memory of another width.
    pub Decoder(tgt: [B, 8, 64], memory: [B, 10, 32]) {
        tgt -> cross: MultiHeadAttention(heads = 4, memory = memory, kdim = 32, layout = timm)
    }
}

fn main() {}
