use netdsl::network;

network! {
    pub Net(x: [B, 3, 8, 8]) {
        x -> features: seq { Conv2d(4, kernel = 3) -> ReLU }
          -> features_0: Conv2d(4, kernel = 3)
    }
}

fn main() {}
