use netdsl::network;

// A wrong first layer does not hide a head that disagrees with the
// declared output: `fc` gives 10 classes whatever came before.
network! {
    pub Classifier(x: [B, 3, 32, 32]) -> [B, 12] {
        x -> conv: Conv2d(1 -> 8, kernel = 3) -> relu
          -> pool: AdaptiveAvgPool2d(1) -> flatten
          -> fc: Linear(8 -> 10)
    }
}

fn main() {}
