use netdsl::network;

network! {
    block Bottleneck(x: [B, C, H, W], out: usize, mid: usize = out / 4) {
        x -> reduce: Conv2d(mid, kernel = 1) -> relu -> expand: Conv2d(out, kernel = 1)
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> block: Bottleneck(18)
    }
}

fn main() {}
