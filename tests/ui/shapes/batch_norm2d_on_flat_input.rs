use netdsl::network;

network! {
    pub Net(x: [B, 784]) {
        x -> fc1: Linear(10) -> bn1: BatchNorm2d
    }
}

fn main() {}
