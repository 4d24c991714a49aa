use netdsl::network;

network! {
    pub Net(x: [B, 100]) {
        x -> fc: Linear(10, init = xavier_unifrom)
    }
}

fn main() {}
