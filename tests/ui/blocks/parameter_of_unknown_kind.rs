use netdsl::network;

network! {
    block ConvBn(x: [B, C, H, W], out: i32) {
        x -> conv: Conv2d(out, kernel = 3, padding = 1) -> bn: BatchNorm2d -> relu
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> stem: ConvBn(16)
    }
}

fn main() {}
