use netdsl::network;

network! {
    block Bottleneck(x: [B, C, H, W], out: usize) {
        x -> reduce: Conv2d(out / 3, kernel = 1) -> relu -> expand: Conv2d(out, kernel = 1)
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> block: Bottleneck(16)
    }
}

fn main() {}
