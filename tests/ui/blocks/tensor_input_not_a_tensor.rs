use netdsl::network;

// A block's tensor parameter takes the name of a tensor, not a number.
network! {
    block Gate(x: [B, C, H, W], g: [B, C, H, W]) {
        x * (g -> sigmoid)
    }
    pub Net(x: [B, 3, 32, 32]) {
        x -> gate: Gate(1)
    }
}

fn main() {}
