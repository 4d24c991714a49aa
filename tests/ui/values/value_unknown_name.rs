use netdsl::network;

network! {
    pub Net(x: [B, 16]) -> [B, 10] {
        let hidden = 4 * widht;
        x -> fc1: Linear(hidden) -> relu -> fc2: Linear(10)
    }
}

fn main() {}
