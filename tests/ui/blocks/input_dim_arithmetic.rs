use netdsl::network;

network! {
    pub Net(x: [B, 3, H / 2, W]) {
        x -> conv: Conv2d(16, kernel = 3, padding = 1)
    }
}

fn main() {}
