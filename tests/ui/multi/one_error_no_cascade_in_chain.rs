use netdsl::network;

network! {
    pub Net(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(2 -> 6, kernel = 5) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)
          -> flatten
          -> fc1: Linear(256 -> 120) -> relu
          -> fc2: Linear(10)
    }
}

fn main() {}
