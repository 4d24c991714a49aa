use netdsl::network;

network! {
    pub Net(x: [B, 1, 32, 32]) {
        x -> Median(4)
    }
}

fn main() {}
