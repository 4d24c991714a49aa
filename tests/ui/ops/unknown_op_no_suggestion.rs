use netdsl::network;

network! {
    pub Net(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(16, kernel = 3) -> scan: SelectiveScan(8)
    }
}

fn main() {}
