use netdsl::network;

network! {
    /// `bias = 0`.
    pub ResNet(x: [B, 3, 224, 224]) {
        x -> conv1: Conv2d(64, kernel = 7, stride = 2, padding = 3, bias = 0)
    }
}

fn main() {}
