use netdsl::network;

network! {
    /// Keras's `BatchNormalization`.
    pub Net(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(16, kernel = 3, padding = 1) -> bn: BatchNormalization -> relu
    }
}

fn main() {}
