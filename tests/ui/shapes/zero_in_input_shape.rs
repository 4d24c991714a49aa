use netdsl::network;

network! {
    pub Net(x: [B, 0, 28, 28]) {
        x -> flatten
    }
}

fn main() {}
