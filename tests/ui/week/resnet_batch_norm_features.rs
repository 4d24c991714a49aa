use netdsl::network;

network! {
    /// A batch norm sized for the block's input, not its convolution.
    pub ResNet(x: [B, 3, 224, 224]) {
        x -> conv1: Conv2d(64, kernel = 7, stride = 2, padding = 3, bias = false) -> bn1: BatchNorm2d(3) -> relu
    }
}

fn main() {}
