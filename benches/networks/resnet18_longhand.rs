network! {
    /// ResNet-18 written out layer by layer (before blocks), with torchvision's names: a stem with
    /// padded max pooling, four stages of two basic blocks (identity shortcuts,
    /// or a strided 1x1 projection where the shape changes), adaptive average
    /// pooling and a classifier. Its state_dict equals torchvision's `resnet18`.
    pub ResNet18Longhand(x: [B, 3, 224, 224]) -> [B, 1000] {
        let s = x -> conv1: Conv2d(64, kernel = 7, stride = 2, padding = 3, bias = false) -> bn1: BatchNorm2d -> relu
                  -> maxpool: MaxPool2d(3, stride = 2, padding = 1)  : [B, 64, 56, 56];
        let m1 = s -> layer1.0.conv1: Conv2d(64, kernel = 3, stride = 1, padding = 1, bias = false) -> layer1.0.bn1: BatchNorm2d -> relu
                   -> layer1.0.conv2: Conv2d(64, kernel = 3, padding = 1, bias = false) -> layer1.0.bn2: BatchNorm2d;
        let x1 = (s + m1) -> relu;
        let m2 = x1 -> layer1.1.conv1: Conv2d(64, kernel = 3, stride = 1, padding = 1, bias = false) -> layer1.1.bn1: BatchNorm2d -> relu
                   -> layer1.1.conv2: Conv2d(64, kernel = 3, padding = 1, bias = false) -> layer1.1.bn2: BatchNorm2d;
        let x2 = (x1 + m2) -> relu;
        let m3 = x2 -> layer2.0.conv1: Conv2d(128, kernel = 3, stride = 2, padding = 1, bias = false) -> layer2.0.bn1: BatchNorm2d -> relu
                   -> layer2.0.conv2: Conv2d(128, kernel = 3, padding = 1, bias = false) -> layer2.0.bn2: BatchNorm2d;
        let d3 = x2 -> layer2.0.downsample: seq { Conv2d(128, kernel = 1, stride = 2, bias = false) -> BatchNorm2d };
        let x3 = (d3 + m3) -> relu;
        let m4 = x3 -> layer2.1.conv1: Conv2d(128, kernel = 3, stride = 1, padding = 1, bias = false) -> layer2.1.bn1: BatchNorm2d -> relu
                   -> layer2.1.conv2: Conv2d(128, kernel = 3, padding = 1, bias = false) -> layer2.1.bn2: BatchNorm2d;
        let x4 = (x3 + m4) -> relu;
        let m5 = x4 -> layer3.0.conv1: Conv2d(256, kernel = 3, stride = 2, padding = 1, bias = false) -> layer3.0.bn1: BatchNorm2d -> relu
                   -> layer3.0.conv2: Conv2d(256, kernel = 3, padding = 1, bias = false) -> layer3.0.bn2: BatchNorm2d;
        let d5 = x4 -> layer3.0.downsample: seq { Conv2d(256, kernel = 1, stride = 2, bias = false) -> BatchNorm2d };
        let x5 = (d5 + m5) -> relu;
        let m6 = x5 -> layer3.1.conv1: Conv2d(256, kernel = 3, stride = 1, padding = 1, bias = false) -> layer3.1.bn1: BatchNorm2d -> relu
                   -> layer3.1.conv2: Conv2d(256, kernel = 3, padding = 1, bias = false) -> layer3.1.bn2: BatchNorm2d;
        let x6 = (x5 + m6) -> relu;
        let m7 = x6 -> layer4.0.conv1: Conv2d(512, kernel = 3, stride = 2, padding = 1, bias = false) -> layer4.0.bn1: BatchNorm2d -> relu
                   -> layer4.0.conv2: Conv2d(512, kernel = 3, padding = 1, bias = false) -> layer4.0.bn2: BatchNorm2d;
        let d7 = x6 -> layer4.0.downsample: seq { Conv2d(512, kernel = 1, stride = 2, bias = false) -> BatchNorm2d };
        let x7 = (d7 + m7) -> relu;
        let m8 = x7 -> layer4.1.conv1: Conv2d(512, kernel = 3, stride = 1, padding = 1, bias = false) -> layer4.1.bn1: BatchNorm2d -> relu
                   -> layer4.1.conv2: Conv2d(512, kernel = 3, padding = 1, bias = false) -> layer4.1.bn2: BatchNorm2d;
        let x8 = (x7 + m8) -> relu;
        x8 -> avgpool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(1000)
    }
}
