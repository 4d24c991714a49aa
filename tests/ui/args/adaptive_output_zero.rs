use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> AdaptiveAvgPool2d((0, 6))
    }
}

fn main() {}
