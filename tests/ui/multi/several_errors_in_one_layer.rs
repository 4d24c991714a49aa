use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(16, kernel = 0, stride = 0, padding = -1, bias = 1)
    }
}

fn main() {}
