use netdsl::network;

network! {
    block ConvBn(x: [B, C, H, W], out: usize) {
        x -> conv: Conv2d(out, kernel = 3, padding = 1) -> bn: BatchNorm2d -> relu
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> repeat 2 ConvBn(16)
    }
}

fn main() {}
