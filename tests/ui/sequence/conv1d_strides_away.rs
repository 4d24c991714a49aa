use netdsl::network;

network! {
    pub Net(x: [B, 4, 8]) {
        x -> conv1: Conv1d(8, kernel = 3, stride = 2) -> relu
          -> conv2: Conv1d(8, kernel = 3, stride = 2) -> relu
          -> conv3: Conv1d(8, kernel = 3)
    }
}

fn main() {}
