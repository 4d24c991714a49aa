use netdsl::network;

network! {
    /// An adaptive pool to 0x0.
    pub AlexNet(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv1: Conv2d(64, kernel = 11, stride = 4, padding = 2) -> relu
          -> avgpool: AdaptiveAvgPool2d(0) -> flatten -> fc: Linear(1000)
    }
}

fn main() {}
