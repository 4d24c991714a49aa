use netdsl::network;

network! {
    pub Up(x: [B, 3, 10, 10]) {
        x -> Upsample(scale_factor = 1.5, mode = bilinear)
    }
}

fn main() {}
