use netdsl::network;

// The stem's window does not fit, so the sizes after it are unknown: the
// residual block's `+` over them is not reported (it would follow from the
// stem), but its 16 channels are known, and the head written for 32
// features is wrong on its own.
network! {
    block Residual(x: [B, C, H, W]) {
        let y = x -> c1: Conv2d(C, kernel = 3, padding = 1) -> relu
                  -> c2: Conv2d(C, kernel = 3, padding = 1);
        y + x
    }

    pub Net(x: [B, 3, 8, 8]) -> [B, 10] {
        x -> stem: Conv2d(16, kernel = 9)
          -> r1: Residual()
          -> pool: AdaptiveAvgPool2d(1) -> flatten
          -> fc: Linear(32 -> 10)
    }
}

fn main() {}
