use netdsl::network;

network! {
    /// A 3-D stride on a 2-D convolution.
    pub AlexNet(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv1: Conv2d(64, kernel = 11, stride = (4, 4, 4), padding = 2) -> relu
          -> AdaptiveAvgPool2d(6) -> flatten -> fc: Linear(1000)
    }
}

fn main() {}
