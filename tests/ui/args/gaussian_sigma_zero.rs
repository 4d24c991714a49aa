use netdsl::network;

network! {
    pub Net(x: [B, 1, 32, 32]) {
        x -> Gaussian(0.0)
    }
}

fn main() {}
