use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(64, kernel = 3, padding = 1) -> bn1: BatchNorm2d(32) -> relu
    }
}

fn main() {}
