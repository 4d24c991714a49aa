use netdsl::network;

network! {
    pub Encoder(x: [B, 10, 64]) {
        x -> norm: LayerNorm(32)
    }
}

fn main() {}
