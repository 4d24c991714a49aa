use netdsl::network;

network! {
    /// The classifier's first Linear written for its hidden width.
    pub AlexNet(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv1: Conv2d(64, kernel = 11, stride = 4, padding = 2) -> relu -> max_pool(3, stride = 2)
          -> conv2: Conv2d(256, kernel = 5, padding = 2) -> relu
          -> avgpool: AdaptiveAvgPool2d(6) -> flatten
          -> fc6: Linear(4096 -> 4096) -> relu -> fc7: Linear(4096) -> relu -> fc8: Linear(1000)
    }
}

fn main() {}
