use netdsl::network;

network! {
    /// A stem written for grey images on RGB ones, and a classifier for ResNet-50's 2048 features: both reported in one build.
    pub ResNet(x: [B, 3, 64, 64]) -> [B, 10] {
        x -> conv1: Conv2d(1 -> 64, kernel = 7, stride = 2, padding = 3) -> relu
          -> avgpool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(2048 -> 10)
    }
}

fn main() {}
