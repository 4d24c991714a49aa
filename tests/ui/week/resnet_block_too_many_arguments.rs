use netdsl::network;

network! {
    /// A third argument a block does not take.
    block BasicBlock(x: [B, C, H, W], out: usize, stride: usize = 1) {
        let y = x -> conv1: Conv2d(out, kernel = 3, stride = stride, padding = 1, bias = false) -> bn1: BatchNorm2d -> relu
          -> conv2: Conv2d(out, kernel = 3, padding = 1, bias = false) -> bn2: BatchNorm2d;
        y
    }
    pub ResNet(x: [B, 64, 56, 56]) {
        x -> layer1: BasicBlock(64, 1, 2)
    }
}

fn main() {}
