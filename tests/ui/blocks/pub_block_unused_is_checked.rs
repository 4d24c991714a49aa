use netdsl::network;

network! {
    /// A `pub` block no network here uses is not an error (it is made for
    /// others), but its body is still checked: the typo is reported.
    pub block Stem(x: [B, C, H, W], out: usize) {
        x -> conv: Conv2d(out, kernel = 3, padding = 1) -> rleu
    }
    pub Net(x: [B, 3, 32, 32]) { x -> conv: Conv2d(8, kernel = 3) }
}

fn main() {}
