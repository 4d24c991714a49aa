use netdsl::network;

network! {
    /// Stride given positionally after the kernel.
    pub AlexNet(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv1: Conv2d(64, 11, 4) -> relu -> AdaptiveAvgPool2d(6) -> flatten -> fc: Linear(1000)
    }
}

fn main() {}
