use netdsl::network;

network! {
    /// `ceil_mode = 1`.
    pub ResNet(x: [B, 64, 112, 112]) {
        x -> maxpool: max_pool(3, stride = 2, padding = 1, ceil_mode = 1)
    }
}

fn main() {}
