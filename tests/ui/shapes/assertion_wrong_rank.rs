use netdsl::network;

network! {
    pub Net(x: [B, 1, 28, 28]) {
        x -> flatten : [B, _, _]
    }
}

fn main() {}
