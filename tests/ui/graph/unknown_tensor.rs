use netdsl::network;

network! {
    pub Net(x: [B, 4, 32, 32]) {
        let skip = x -> relu;
        cat(skp, x, dim = 1)
    }
}

fn main() {}
