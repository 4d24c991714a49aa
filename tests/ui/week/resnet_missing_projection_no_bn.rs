use netdsl::network;

network! {
    /// The same residual in a network without batch norm.
    block Plain(x: [B, C, H, W], out: usize, stride: usize = 1) {
        let y = x -> conv1: Conv2d(out, kernel = 3, stride = stride, padding = 1) -> relu
          -> conv2: Conv2d(out, kernel = 3, padding = 1);
        (x + y) -> relu
    }
    pub Net(x: [B, 32, 32, 32]) {
        x -> layer2: Plain(64, stride = 2)
    }
}

fn main() {}
