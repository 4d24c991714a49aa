use netdsl::network;

network! {
    /// `strides`, as Keras spells it.
    pub Vgg(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(64, kernel = 3, strides = 2) -> relu
    }
}

fn main() {}
