use netdsl::network;

// A window over a symbolic size rounds down as PyTorch does, except in ceil mode.
network! {
    pub Net(x: [B, 3, H, W]) {
        x -> conv1: Conv2d(16, kernel = 3, stride = 2) -> max_pool(2, ceil_mode = true)
    }
}

fn main() {}
