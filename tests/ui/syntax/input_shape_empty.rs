use netdsl::network;

network! {
    pub Net(x: ) -> [B, 10] {
        x -> conv: Conv2d(3 -> 16, kernel = 3) -> flatten -> fc: Linear(10)
    }
}

fn main() {}
