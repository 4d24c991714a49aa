use netdsl::network;

network! {
    block ConvBn(x: [B, C, H, W], out: usize, stride: usize = 1) {
        x -> conv: Conv2d(out, kernel = 3, stride = stride, padding = 1) -> bn: BatchNorm2d -> relu
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> stem: ConvBn(stride = 2)
    }
}

fn main() {}
