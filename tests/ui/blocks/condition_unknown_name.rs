use netdsl::network;

network! {
    block Down(x: [B, C, H, W], out: usize, stride: usize = 1) {
        let y = x -> conv: Conv2d(out, kernel = 3, stride = stride, padding = 1);
        let shortcut = if strid != 1 || C != out {
            x -> proj: Conv2d(out, kernel = 1, stride = stride)
        } else {
            x
        };
        y + shortcut
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> down: Down(16)
    }
}

fn main() {}
