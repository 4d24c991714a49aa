use netdsl::network;

network! {
    pub Net(x: [B, 100, 8]) {
        x -> conv: Conv1d(8 -> 16, kernel = 3)
    }
}

fn main() {}
