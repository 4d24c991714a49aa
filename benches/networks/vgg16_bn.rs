network! {
    /// VGG-16 with batch norm (torchvision's `vgg16_bn` layout): each
    /// convolution is followed by a batch norm, which the compiler folds.
    pub Vgg16Bn(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> features: seq { Conv2d(64, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> Conv2d(64, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2) -> Conv2d(128, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> Conv2d(128, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2) -> Conv2d(256, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> Conv2d(256, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> Conv2d(256, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2) -> Conv2d(512, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> Conv2d(512, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> Conv2d(512, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2) -> Conv2d(512, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> Conv2d(512, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> Conv2d(512, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2) }
          -> avgpool: AdaptiveAvgPool2d((7, 7)) -> flatten
          -> classifier: seq { Linear(25088 -> 4096) -> ReLU -> Dropout(0.5) -> Linear(4096) -> ReLU -> Dropout(0.5) -> Linear(1000) }
    }
}
