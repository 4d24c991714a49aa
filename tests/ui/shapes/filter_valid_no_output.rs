use netdsl::network;

network! {
    pub Net(x: [B, 1, 8, 8]) {
        x -> blur: Gaussian(2.0, padding = valid)
    }
}

fn main() {}
