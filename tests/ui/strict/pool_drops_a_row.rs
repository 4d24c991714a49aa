use netdsl::network;

// A strict network: a 2x2 pooling over 57 rows leaves row 56 out.
network! {
    #[netdsl(strict)]
    pub Net(x: [B, 3, 57, 57]) {
        x -> conv1: Conv2d(8, kernel = 3, padding = 1) -> relu
          -> pool1: MaxPool2d(2)
    }
}

fn main() {}
