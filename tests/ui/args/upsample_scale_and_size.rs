use netdsl::network;

network! {
    pub Up(x: [B, 3, 16, 16]) {
        x -> Upsample(scale_factor = 2, size = (32, 32))
    }
}

fn main() {}
