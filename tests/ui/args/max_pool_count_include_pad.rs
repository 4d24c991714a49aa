use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> MaxPool2d(3, stride = 2, padding = 1, count_include_pad = false)
    }
}

fn main() {}
