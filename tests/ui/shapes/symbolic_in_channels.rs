use netdsl::network;

network! {
    pub Net(x: [B, C, 28, 28]) {
        x -> conv1: Conv2d(16, kernel = 3)
    }
}

fn main() {}
