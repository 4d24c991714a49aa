use netdsl::network;

network! {
    /// `A` is used only by `Net1`, whose classifier is wrong: that error
    /// is reported, and `A` is not called unused.
    block A(x: [B, C, H, W], out: usize) { x -> c: Conv2d(out, kernel = 1) }
    block Bb(x: [B, C, H, W], out: usize) { x -> c: Conv2d(out, kernel = 1) }
    pub Net1(x: [B, 32, 48, 48]) -> [B, 10] { x -> a: A(16) -> flatten -> fc: Linear(1000 -> 10) }
    pub Net2(x: [B, 32, 48, 48]) { x -> b: Bb(16) }
}

fn main() {}
