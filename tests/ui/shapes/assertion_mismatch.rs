use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(8, kernel = 3) -> relu : [B, 8, 32, 32]
    }
}

fn main() {}
