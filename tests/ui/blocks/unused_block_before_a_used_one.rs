use netdsl::network;

network! {
    /// An unused block defined before a used one.
    block Unused(x: [B, C, H, W], out: usize) { x -> c: Conv2d(out, kernel = 1) }
    block Used(x: [B, C, H, W], out: usize) { x -> c: Conv2d(out, kernel = 1) }
    pub Net(x: [B, 32, 48, 48]) { x -> u: Used(16) }
}

fn main() {}
