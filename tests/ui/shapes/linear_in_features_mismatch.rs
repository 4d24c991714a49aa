use netdsl::network;

network! {
    pub Net(x: [B, 1, 28, 28]) {
        x -> conv1: Conv2d(16, kernel = 5) -> max_pool(2) -> flatten
          -> fc1: Linear(400 -> 120)
    }
}

fn main() {}
