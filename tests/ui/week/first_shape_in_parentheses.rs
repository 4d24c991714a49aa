use netdsl::network;

network! {
    /// The input's shape in parentheses, as a Python tuple.
    pub LeNet(x: (B, 1, 28, 28)) {
        x -> conv1: Conv2d(6, kernel = 5)
    }
}

fn main() {}
