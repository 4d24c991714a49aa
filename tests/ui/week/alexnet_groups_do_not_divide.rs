use netdsl::network;

network! {
    /// The original two-GPU AlexNet's groups, miscounted.
    pub AlexNet(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv1: Conv2d(64, kernel = 11, stride = 4, padding = 2) -> relu
          -> conv2: Conv2d(256, kernel = 5, padding = 2, groups = 3) -> relu
          -> AdaptiveAvgPool2d(6) -> flatten -> fc: Linear(1000)
    }
}

fn main() {}
