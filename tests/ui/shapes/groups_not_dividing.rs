use netdsl::network;

network! {
    pub Net(x: [B, 6, 28, 28]) {
        x -> conv1: Conv2d(16, kernel = 3, groups = 4)
    }
}

fn main() {}
