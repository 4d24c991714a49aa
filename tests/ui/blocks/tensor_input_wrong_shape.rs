use netdsl::network;

// A block's further tensor input is checked against its declared shape.
network! {
    block Gate(x: [B, C, H, W], g: [B, C, H, W]) {
        x * (g -> sigmoid)
    }
    pub Net(x: [B, 3, 32, 32]) {
        let small = x -> max_pool(2);
        x -> conv: Conv2d(3, kernel = 3, padding = 1) -> gate: Gate(small)
    }
}

fn main() {}
