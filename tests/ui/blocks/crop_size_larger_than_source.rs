use netdsl::network;

network! {
    pub Net(x: [B, 4, 32, 32]) {
        let small = x -> max_pool(2);
        crop(small, size = (24, 24))
    }
}

fn main() {}
