use netdsl::network;

network! {
    pub Net(x: [B, 4, T]) {
        x -> conv: Conv1d(8, kernel = 3, padding = 1) -> relu -> flatten -> fc: Linear(10)
    }
}

fn main() {}
