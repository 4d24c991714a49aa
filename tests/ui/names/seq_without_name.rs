use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> seq { Conv2d(16, kernel = 3) -> ReLU }
    }
}

fn main() {}
