use netdsl::network;

network! {
    #[netdsl(strcit)]
    pub Net(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(8, kernel = 3)
    }
}

fn main() {}
