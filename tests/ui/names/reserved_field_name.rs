use netdsl::network;

network! {
    pub Net(x: [B, 16]) {
        x -> training: Linear(4)
    }
}

fn main() {}
