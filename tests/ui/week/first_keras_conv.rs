use netdsl::network;

network! {
    /// Keras's `Conv2D`.
    pub LeNet(x: [B, 1, 28, 28]) {
        x -> conv1: Conv2D(6, kernel = 5) -> relu
    }
}

fn main() {}
