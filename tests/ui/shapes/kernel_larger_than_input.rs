use netdsl::network;

network! {
    pub Net(x: [B, 3, 8, 8]) {
        x -> conv1: Conv2d(16, kernel = 3) -> max_pool(2)
          -> conv2: Conv2d(32, kernel = 5)
    }
}

fn main() {}
