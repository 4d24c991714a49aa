use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> max_pool(3, stride = 2, padding = 2)
    }
}

fn main() {}
