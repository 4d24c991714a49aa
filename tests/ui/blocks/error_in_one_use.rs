use netdsl::network;

network! {
    block Grouped(x: [B, C, H, W], out: usize) {
        x -> conv: Conv2d(out, kernel = 3, padding = 1, groups = 4) -> relu
    }
    pub Net(x: [B, 8, 32, 32]) {
        x -> layer1: Grouped(16) -> layer2: Grouped(6)
    }
}

fn main() {}
