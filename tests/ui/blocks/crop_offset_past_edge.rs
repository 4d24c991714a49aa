use netdsl::network;

network! {
    pub Net(x: [B, 4, 32, 32]) {
        crop(x, size = (24, 24), top = 4, left = 10)
    }
}

fn main() {}
