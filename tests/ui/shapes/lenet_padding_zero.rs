use netdsl::network;

network! {
    /// LeNet-5 with the padding of conv1 forgotten: 28 -> 24 -> 12 -> 8 -> 4,
    /// so the assertion after conv2 sees [B, 16, 4, 4].
    pub LeNet(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(1 -> 6, kernel = 5, padding = 0) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)  : [B, 16, 5, 5]
          -> flatten
          -> fc1: Linear(400 -> 120) -> relu
          -> fc2: Linear(84) -> relu
          -> fc3: Linear(10)
    }
}

fn main() {}
