use netdsl::network;

network! {
    pub Net(x: [B, 1, 28, 28]) {
        x -> conv1: Conv2d(6, kernel = 5) -> relu
          -> conv2: Conv2d(3 -> 16, kernel = 5)
    }
}

fn main() {}
