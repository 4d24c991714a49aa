use netdsl::network;

network! {
    block Head(x: [B, C, H, W]) {
        x -> pool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(H)
    }
    pub Net(x: [B, 3, H, W]) {
        x -> conv: Conv2d(16, kernel = 3, padding = 1) -> head: Head
    }
}

fn main() {}
