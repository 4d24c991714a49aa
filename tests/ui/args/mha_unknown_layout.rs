use netdsl::network;

network! {
    pub Net(x: [B, 16, 64]) {
        x -> attn: MultiHeadAttention(heads = 4, layout = huggingface)
    }
}

fn main() {}
