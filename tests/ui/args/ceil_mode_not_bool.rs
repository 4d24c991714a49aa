use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> MaxPool2d(3, stride = 2, ceil_mode = 1)
    }
}

fn main() {}
