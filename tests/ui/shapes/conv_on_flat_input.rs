use netdsl::network;

network! {
    pub Net(x: [B, 1, 28, 28]) {
        x -> flatten -> conv1: Conv2d(6, kernel = 3)
    }
}

fn main() {}
