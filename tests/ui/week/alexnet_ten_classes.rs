use netdsl::network;

network! {
    /// The head left at 10 classes for ImageNet.
    pub AlexNet(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv1: Conv2d(64, kernel = 11, stride = 4, padding = 2) -> relu
          -> AdaptiveAvgPool2d(6) -> flatten -> fc6: Linear(4096) -> relu -> fc8: Linear(10)
    }
}

fn main() {}
