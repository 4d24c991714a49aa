use netdsl::network;

network! {
    pub Net(x: [B, 1, H, W]) {
        x + (x -> max_pool(2))
    }
}

fn main() {}
