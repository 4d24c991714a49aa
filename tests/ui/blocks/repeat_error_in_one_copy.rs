use netdsl::network;

network! {
    block Down(x: [B, C, H, W], out: usize) {
        x -> conv: Conv2d(out, kernel = 3, stride = 2) -> relu
    }
    pub Net(x: [B, 3, 16, 16]) {
        x -> layers: repeat 4 Down(8)
    }
}

fn main() {}
