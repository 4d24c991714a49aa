use netdsl::network;

network! {
    /// `..` before an op: only a block's layers can be spliced.
    pub Net(x: [B, 3, 32, 32]) {
        x -> features: seq { ..Conv2d(8, kernel = 3) -> ReLU }
    }
}

fn main() {}
