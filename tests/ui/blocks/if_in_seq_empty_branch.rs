use netdsl::network;

network! {
    /// An `if` in a `seq` with nothing in its branch.
    block Expand(x: [B, C, H, W], out: usize, t: usize) {
        x -> conv: seq { if t != 1 { } -> Conv2d(out, kernel = 1) }
    }
    pub Net(x: [B, 8, 16, 16]) { x -> block: Expand(16, t = 6) }
}

fn main() {}
