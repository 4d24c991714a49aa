use netdsl::network;

network! {
    /// Five VGG pools on a 16x16 input: the last has nothing left.
    pub Vgg(x: [B, 3, 16, 16]) {
        x -> conv1: Conv2d(64, kernel = 3, padding = 1) -> max_pool(2)
          -> conv2: Conv2d(128, kernel = 3, padding = 1) -> max_pool(2)
          -> conv3: Conv2d(256, kernel = 3, padding = 1) -> max_pool(2)
          -> conv4: Conv2d(512, kernel = 3, padding = 1) -> max_pool(2)
          -> conv5: Conv2d(512, kernel = 3, padding = 1) -> max_pool(3)
    }
}

fn main() {}
