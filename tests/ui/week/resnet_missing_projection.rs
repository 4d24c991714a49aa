use netdsl::network;

network! {
    /// ResNet-18's first block of layer2 halves the size and doubles the channels, but adds the input unchanged.
    block BasicBlock(x: [B, C, H, W], out: usize, stride: usize = 1) {
        let y = x -> conv1: Conv2d(out, kernel = 3, stride = stride, padding = 1, bias = false) -> bn1: BatchNorm2d -> relu
          -> conv2: Conv2d(out, kernel = 3, padding = 1, bias = false) -> bn2: BatchNorm2d;
        (x + y) -> relu
    }
    pub ResNet(x: [B, 64, 56, 56]) {
        x -> layer2: BasicBlock(128, stride = 2)
    }
}

fn main() {}
