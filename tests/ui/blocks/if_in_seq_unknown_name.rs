use netdsl::network;

network! {
    /// MobileNetV2's expansion, its condition on a misspelt parameter.
    block InvertedResidual(x: [B, C, H, W], out: usize, t: usize) {
        x -> conv: seq {
            if tt != 1 { Conv2d(C * t, kernel = 1) -> ReLU6 }
            -> Conv2d(out, kernel = 1)
        }
    }
    pub Net(x: [B, 8, 16, 16]) { x -> block: InvertedResidual(16, t = 6) }
}

fn main() {}
