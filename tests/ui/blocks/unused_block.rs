use netdsl::network;

network! {
    block Residual(x: [B, C, H, W]) {
        let y = x -> conv: Conv2d(C, kernel = 3, padding = 1);
        (x + y) -> relu
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(8, kernel = 3, padding = 1) -> relu
    }
}

fn main() {}
