use netdsl::network;

network! {
    block Residual(x: [B, C, H, W]) {
        let y = x -> conv: Conv2d(C, kernel = 3, padding = 1) -> relu;
        x -> relu
    }
    pub Net(x: [B, 8, 32, 32]) {
        x -> res: Residual
    }
}

fn main() {}
