use netdsl::network;

network! {
    pub Net(x: [B, T, 8]) {
        x -> conv: Conv1d(16, kernel = 3)
    }
}

fn main() {}
