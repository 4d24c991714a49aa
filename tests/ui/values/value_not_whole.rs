use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        let heads = 3;
        let head = 64 / heads;
        x -> conv: Conv2d(head, kernel = 1)
    }
}

fn main() {}
