use netdsl::network;

network! {
    /// A spliced block's layers are read before its input's shape is known.
    block Widen(x: [B, C, H, W]) {
        x -> Conv2d(2 * C, kernel = 1) -> ReLU
    }
    pub Net(x: [B, 8, 32, 32]) {
        x -> features: seq { Conv2d(8, kernel = 3, padding = 1) -> ..Widen }
    }
}

fn main() {}
