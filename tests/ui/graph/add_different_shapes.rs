use netdsl::network;

network! {
    pub Net(x: [B, 8, 12, 12]) {
        let y = x -> conv: Conv2d(8, kernel = 3);
        x + y
    }
}

fn main() {}
