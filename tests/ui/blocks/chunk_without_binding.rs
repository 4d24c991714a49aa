use netdsl::network;

network! {
    pub Net(x: [B, 8, 16, 16]) {
        chunk(x, 2, dim = 1) -> relu
    }
}

fn main() {}
