network! {
    /// AlexNet (Krizhevsky et al., 2012) exactly as torchvision lays it out:
    /// five convolutions in `features`, an adaptive average pool to 6x6, and
    /// a dropout-regularised classifier, so torchvision's state_dict keys
    /// (`features.0.weight`, `classifier.1.weight`, ..) load unchanged.
    pub AlexNet(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> features: seq {
                Conv2d(64, kernel = 11, stride = 4, padding = 2) -> ReLU -> MaxPool2d(3, stride = 2)
                -> Conv2d(192, kernel = 5, padding = 2) -> ReLU -> MaxPool2d(3, stride = 2)
                -> Conv2d(384, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(256, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(256, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(3, stride = 2)
             }                                                            : [B, 256, 6, 6]
          -> avgpool: AdaptiveAvgPool2d((6, 6))
          -> flatten
          -> classifier: seq {
                Dropout(0.5) -> Linear(9216 -> 4096) -> ReLU
                -> Dropout(0.5) -> Linear(4096) -> ReLU
                -> Linear(1000)
             }
    }
}
