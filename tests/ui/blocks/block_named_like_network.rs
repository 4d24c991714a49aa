use netdsl::network;

network! {
    block Net(x: [B, C, H, W], out: usize) {
        x -> conv: Conv2d(out, kernel = 3, padding = 1) -> relu
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> conv: Conv2d(16, kernel = 3)
    }
}

fn main() {}
