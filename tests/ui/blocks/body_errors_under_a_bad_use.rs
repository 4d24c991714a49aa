use netdsl::network;

// Every use of `Down` is wrong, so no use checks its body; the body is
// checked on its own and its typos are reported in the same build.
network! {
    block Down(x: [B, C, H, W], out: usize, stride: usize = 1) {
        let y = x -> conv: Conv2d(out, kernel = 3, stride = stride, padding = 1) -> rleu;
        let z = if stride != 1 { y -> pool: max_pool(2) } else { yy };
        z -> bn: BatchNorm2d(paddin = 1)
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> d1: Down(stride = 2)
    }
}

fn main() {}
