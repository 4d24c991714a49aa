use netdsl::network;

network! {
    /// `padding = sme`.
    pub Vgg(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(64, kernel = 3, padding = sme) -> relu
    }
}

fn main() {}
