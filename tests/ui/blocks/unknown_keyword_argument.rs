use netdsl::network;

network! {
    block Down(x: [B, C, H, W], out: usize, stride: usize = 2) {
        x -> conv: Conv2d(out, kernel = 3, stride = stride, padding = 1) -> relu
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> down: Down(16, strides = 2)
    }
}

fn main() {}
