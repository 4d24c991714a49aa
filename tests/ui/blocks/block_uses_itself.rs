use netdsl::network;

network! {
    block Stage(x: [B, C, H, W], out: usize) {
        x -> conv: Conv2d(out, kernel = 3, padding = 1) -> relu -> next: Stage(out)
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> layer1: Stage(16)
    }
}

fn main() {}
