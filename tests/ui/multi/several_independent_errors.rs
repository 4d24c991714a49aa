use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(16, kernel = 3, stride = 0) -> Relu
          -> conv2: Conv2d(32, kernel = 3, paddin = 1) -> max_pool(2)
          -> flatten
          -> fc1: Linear(10)
    }

    pub Other(x: [B, 1, 28, 28]) {
        x -> conv1: Conv2d(2 -> 6, kernel = 5) -> conv1: Conv2d(6, kernel = 5)
    }
}

fn main() {}
