use netdsl::network;

network! {
    pub Net(x: [B, 64, 16, 16]) {
        let (a, b) = split(x, [16, 32], dim = 1);
        cat(a -> relu, b -> tanh, dim = 1)
    }
}

fn main() {}
