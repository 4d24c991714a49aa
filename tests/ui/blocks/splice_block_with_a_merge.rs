use netdsl::network;

network! {
    /// A residual block is not one chain: it cannot be spliced.
    block Residual(x: [B, C, H, W], out: usize) {
        let y = x -> conv: Conv2d(out, kernel = 3, padding = 1);
        x + y
    }
    pub Net(x: [B, 8, 32, 32]) {
        x -> features: seq { Conv2d(8, kernel = 3, padding = 1) -> ..Residual(8) }
    }
}

fn main() {}
