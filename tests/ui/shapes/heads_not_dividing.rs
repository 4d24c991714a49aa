use netdsl::network;

network! {
    pub Encoder(x: [B, 10, 250]) {
        x -> attn: MultiHeadAttention(heads = 8)
    }
}

fn main() {}
