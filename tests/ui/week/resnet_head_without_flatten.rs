use netdsl::network;

network! {
    /// The classifier applied to the pooled [B, 512, 1, 1] without flattening.
    pub ResNet(x: [B, 512, 7, 7]) -> [B, 1000] {
        x -> avgpool: AdaptiveAvgPool2d(1) -> fc: Linear(512 -> 1000)
    }
}

fn main() {}
