use netdsl::network;

network! {
    block Ping(x: [B, C, H, W], out: usize) {
        x -> conv: Conv2d(out, kernel = 3, padding = 1) -> pong: Pong(out)
    }
    block Pong(x: [B, C, H, W], out: usize) {
        x -> conv: Conv2d(out, kernel = 3, padding = 1) -> ping: Ping(out)
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> layer1: Ping(16)
    }
}

fn main() {}
