use netdsl::network;

network! {
    pub Net(x: [B, 1, H, W]) {
        x -> conv: Conv2d(4, kernel = 3, padding = 1) -> max_pool(2) : [B, 4, H, W / 2]
    }
}

fn main() {}
