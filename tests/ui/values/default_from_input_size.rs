use netdsl::network;

network! {
    block Expand(x: [B, C, H, W], t: usize = 6, hidden: usize = C * t / 4) {
        x -> conv: Conv2d(hidden, kernel = 1)
    }

    pub Net(x: [B, 6, 16, 16]) {
        x -> e: Expand(t = 3)
    }
}

fn main() {}
