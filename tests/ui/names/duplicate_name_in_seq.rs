use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> features: seq {
                conv: Conv2d(16, kernel = 3) -> ReLU
                -> conv: Conv2d(32, kernel = 3) -> ReLU
             }
    }
}

fn main() {}
