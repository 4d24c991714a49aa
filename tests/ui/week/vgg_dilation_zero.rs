use netdsl::network;

network! {
    /// A dilation of 0.
    pub Vgg(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(64, kernel = 3, padding = 1, dilation = 0) -> relu
    }
}

fn main() {}
