use netdsl::network;

network! {
    /// A VGG stage whose second conv repeats the first's input channels.
    pub Vgg(x: [B, 3, 32, 32]) {
        x -> conv1_1: Conv2d(3 -> 64, kernel = 3, padding = 1) -> relu
          -> conv1_2: Conv2d(3 -> 64, kernel = 3, padding = 1) -> relu -> max_pool(2)
    }
}

fn main() {}
