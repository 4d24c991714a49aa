use netdsl::network;

network! {
    /// A model ported from Keras, Flax and a paper's figure: each layer's
    /// name is another framework's (or a kernel size in the name).
    pub Ported(x: [B, 3, 32, 32]) -> [B, 10] {
        x -> c1: Conv3x3(16) -> relu -> MaxPooling2D(2)
          -> c2: Conv2d(32, kernel = 3, padding = 1) -> Swish
          -> GlobalAveragePooling2D -> fc: Dense(10)
    }
}

fn main() {}
