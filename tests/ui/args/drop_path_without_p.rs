use netdsl::network;

network! {
    pub Net(x: [B, 16, 64]) {
        x -> fc: Linear(64) -> DropPath
    }
}

fn main() {}
