use netdsl::network;

network! {
    /// A kernel size written as a float.
    pub AlexNet(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv1: Conv2d(64, kernel = 11.0, stride = 4, padding = 2) -> relu
          -> AdaptiveAvgPool2d(6) -> flatten -> fc: Linear(1000)
    }
}

fn main() {}
