network! {
    /// ResNet's basic block (He et al., 2016): two 3x3 convolutions with
    /// batch norm, and a shortcut that is the identity, or a strided 1x1
    /// projection (`downsample`) where the width or the size changes.
    pub block BasicBlock(x: [B, C, H, W], out: usize, stride: usize = 1) -> [B, out, (H - 1) / stride + 1, (W - 1) / stride + 1] {
        let y = x -> conv1: Conv2d(out, kernel = 3, stride = stride, padding = 1, bias = false)
                  -> bn1: BatchNorm2d -> relu
                  -> conv2: Conv2d(out, kernel = 3, padding = 1, bias = false) -> bn2: BatchNorm2d;
        let shortcut = if stride != 1 || C != out {
            x -> downsample: seq { Conv2d(out, kernel = 1, stride = stride, bias = false) -> BatchNorm2d }
        } else {
            x
        };
        (y + shortcut) -> relu
    }

    /// ResNet-18 with torchvision's module names: a stem with padded max
    /// pooling, four stages of two basic blocks, adaptive average pooling and
    /// a classifier. Its state_dict equals torchvision's `resnet18`.
    pub ResNet18(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv1: Conv2d(64, kernel = 7, stride = 2, padding = 3, bias = false) -> bn1: BatchNorm2d -> relu
          -> maxpool: MaxPool2d(3, stride = 2, padding = 1)                       : [B, 64, 56, 56]
          -> layer1: repeat 2 BasicBlock(64)
          -> layer2: seq { BasicBlock(128, stride = 2) -> BasicBlock(128) }      : [B, 128, 28, 28]
          -> layer3: seq { BasicBlock(256, stride = 2) -> BasicBlock(256) }
          -> layer4: seq { BasicBlock(512, stride = 2) -> BasicBlock(512) }      : [B, 512, 7, 7]
          -> avgpool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(1000)
    }
}
