use netdsl::network;

network! {
    block BasicBlock(x: [B, C, H, W], out: usize) {
        x -> conv: Conv2d(out, kernel = 3, padding = 1) -> relu
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> layer1: BasikBlock(16)
    }
}

fn main() {}
