use netdsl::network;

// A segmentation head whose last convolution gives 8 classes where the
// network declares 21: the edit is at `head`, through the softmax that
// keeps the channels.
network! {
    pub Seg(x: [B, 3, 64, 64]) -> [B, 21, 64, 64] {
        x -> c1: Conv2d(32, kernel = 3, padding = 1) -> relu
          -> head: Conv2d(32 -> 8, kernel = 1)
          -> softmax(dim = 1)
    }
}

fn main() {}
