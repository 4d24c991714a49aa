use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(16, kernel = 3 stride = 2) -> relu
          -> conv2: Conv2d(32, kernal = 3)
          -> avg_pool(2, strides = 2)
    }
}

fn main() {}
