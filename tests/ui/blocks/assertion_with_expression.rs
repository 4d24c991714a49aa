use netdsl::network;

network! {
    block Down(x: [B, C, H, W], out: usize) {
        x -> conv: Conv2d(out, kernel = 3, padding = 1) -> relu : [B, out, H / 2, W / 2]
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> down: Down(16)
    }
}

fn main() {}
