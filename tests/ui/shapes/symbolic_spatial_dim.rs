use netdsl::network;

network! {
    pub Net(x: [B, 3, H, W]) {
        x -> conv1: Conv2d(16, kernel = 3, stride = 2)
    }
}

fn main() {}
