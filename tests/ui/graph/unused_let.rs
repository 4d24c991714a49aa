use netdsl::network;

network! {
    pub Net(x: [B, 4, 32, 32]) {
        let unused = x -> relu;
        x -> tanh
    }
}

fn main() {}
