use netdsl::network;

network! {
    pub Net(x: [B, 8, 16, 16]) {
        let (a, b) = chunk(x, 3, dim = 1);
        a + b
    }
}

fn main() {}
