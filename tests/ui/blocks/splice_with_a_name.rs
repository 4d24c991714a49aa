use netdsl::network;

network! {
    /// A spliced use has no name level of its own.
    block Stage(x: [B, C, H, W], out: usize) {
        x -> Conv2d(out, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> features: seq { ..stage1: Stage(8) -> ..Stage(16) }
    }
}

fn main() {}
