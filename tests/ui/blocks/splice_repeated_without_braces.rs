use netdsl::network;

network! {
    /// `repeat 2 ..Stage(8)`: a spliced use is repeated inside braces.
    block Stage(x: [B, C, H, W], out: usize) {
        x -> Conv2d(out, kernel = 3, padding = 1) -> ReLU
    }
    pub Net(x: [B, 3, 32, 32]) { x -> features: seq { repeat 2 ..Stage(8) } }
}

fn main() {}
