use netdsl::network;

network! {
    block Head(x: [B, 512], classes: usize) {
        x -> fc: Linear(classes)
    }
    pub Net(x: [B, 3, 16, 16]) {
        x -> pool: AdaptiveAvgPool2d(1) -> flatten -> head: Head(10)
    }
}

fn main() {}
