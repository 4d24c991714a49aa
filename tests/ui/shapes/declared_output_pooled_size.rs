use netdsl::network;

// Features pooled to 7x7 where the network declares 6x6 (AlexNet's
// `avgpool`): the edit is the pool's output size.
network! {
    pub Features(x: [B, 3, 224, 224]) -> [B, 64, 6, 6] {
        x -> conv1: Conv2d(64, kernel = 11, stride = 4, padding = 2) -> relu
          -> max_pool(3, stride = 2)
          -> avgpool: AdaptiveAvgPool2d(7)
    }
}

fn main() {}
