use netdsl::network;

network! {
    pub Net(x: [B, 60, 16, 16]) {
        let (a, b) = split(x, 16, dim = 1);
        cat(a -> relu, b, dim = 1)
    }
}

fn main() {}
