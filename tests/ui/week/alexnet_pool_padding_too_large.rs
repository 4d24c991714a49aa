use netdsl::network;

network! {
    /// A pool padding over half its kernel.
    pub AlexNet(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv1: Conv2d(64, kernel = 11, stride = 4, padding = 2) -> relu
          -> max_pool(3, stride = 2, padding = 2)
          -> AdaptiveAvgPool2d(6) -> flatten -> fc: Linear(1000)
    }
}

fn main() {}
