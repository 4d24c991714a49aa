use netdsl::network;

network! {
    pub Vit(x: [B, 3, 100, 100]) {
        x -> conv_proj: PatchEmbed(64, patch = 16)
    }
}

fn main() {}
