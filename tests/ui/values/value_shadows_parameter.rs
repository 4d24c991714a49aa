use netdsl::network;

network! {
    block Expand(x: [B, C, H, W], out: usize) {
        let out = 2 * C;
        x -> conv: Conv2d(out, kernel = 1)
    }

    pub Net(x: [B, 8, 16, 16]) {
        x -> e: Expand(16)
    }
}

fn main() {}
