use netdsl::network;

network! {
    pub Net(x: [B, 784]) {
        x -> fc1: Linear(128) -> LeakyReLU(slope = 0.2)
    }
}

fn main() {}
