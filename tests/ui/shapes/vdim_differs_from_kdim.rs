use netdsl::network;

network! {
    /// One memory gives the keys and the values: one width.
    pub Decoder(tgt: [B, 8, 64], memory: [B, 10, 32]) {
        tgt -> cross: MultiHeadAttention(heads = 4, memory = memory, kdim = 32, vdim = 16)
    }
}

fn main() {}
