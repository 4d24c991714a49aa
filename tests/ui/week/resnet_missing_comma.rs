use netdsl::network;

network! {
    /// A comma missing between two arguments.
    pub ResNet(x: [B, 3, 224, 224]) {
        x -> conv1: Conv2d(64, kernel = 7, stride = 2 padding = 3, bias = false) -> relu
    }
}

fn main() {}
