network! {
    /// VGG-16 (Simonyan & Zisserman, 2014), configuration D, exactly as
    /// torchvision lays it out: thirteen 3x3 convolutions in five stages,
    /// each closed by 2x2 max pooling, an adaptive average pool to 7x7, and
    /// three fully connected layers.
    pub Vgg16(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> features: seq {
                Conv2d(64, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(64, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)       : [B, 64, 112, 112]
                -> Conv2d(128, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(128, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)      : [B, 128, 56, 56]
                -> Conv2d(256, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(256, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(256, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)      : [B, 256, 28, 28]
                -> Conv2d(512, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(512, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(512, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)      : [B, 512, 14, 14]
                -> Conv2d(512, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(512, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(512, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)      : [B, 512, 7, 7]
             }
          -> avgpool: AdaptiveAvgPool2d((7, 7))
          -> flatten
          -> classifier: seq {
                Linear(25088 -> 4096) -> ReLU -> Dropout(0.5)
                -> Linear(4096) -> ReLU -> Dropout(0.5)
                -> Linear(1000)
             }
    }
}
