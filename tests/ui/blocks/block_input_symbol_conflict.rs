use netdsl::network;

network! {
    block Square(x: [B, C, H, H]) {
        x -> conv: Conv2d(C, kernel = 3, padding = 1) -> relu
    }
    pub Net(x: [B, 3, 32, 16]) {
        x -> sq: Square
    }
}

fn main() {}
