use netdsl::network;

network! {
    block Head(x: [B, F], hidden: usize) {
        x -> fc1: Linear(256 -> hidden) -> relu -> fc2: Linear(10)
    }
    pub Net(x: [B, 3, 16, 16]) {
        x -> flatten -> head: Head(64)
    }
}

fn main() {}
