use netdsl::network;

network! {
    pub Net(x: [B, 784]) {}
}

fn main() {}
