use netdsl::network;

// `conv1`'s window does not fit the 4x4 input, so its output size is
// unknown; its 16 output channels are known, and `conv2` (written for 8)
// and `bn2` (for 32) disagree with what comes before them.
network! {
    pub Net(x: [B, 3, 4, 4]) {
        x -> conv1: Conv2d(16, kernel = 7) -> relu
          -> conv2: Conv2d(8 -> 32, kernel = 3, padding = 1)
          -> bn2: BatchNorm2d(64) -> relu
    }
}

fn main() {}
