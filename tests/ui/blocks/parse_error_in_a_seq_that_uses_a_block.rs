use netdsl::network;

network! {
    /// A doubled `->` inside a block's `seq` that uses another block.
    block Inner(x: [B, C, H, W], out: usize) { x -> seq { Conv2d(out, kernel = 1) } }
    block Outer(x: [B, C, H, W], out: usize) { x -> conv: seq { Inner(out) -> -> relu } }
    pub Net(x: [B, 32, 48, 48]) { x -> o: Outer(16) }
}

fn main() {}
