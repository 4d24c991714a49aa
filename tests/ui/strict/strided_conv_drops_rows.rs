use netdsl::network;

// A strict network: a stride-2 convolution whose last window ends before
// the input does (224 + 2*1 - 3 = 223, odd: row 223 is in no window); with
// another layer that loses nothing, and the default (non-strict) network
// beside it that is not checked.
network! {
    #[netdsl(strict)]
    pub Stem(x: [B, 3, 224, 224]) {
        x -> conv1: Conv2d(32, kernel = 3, stride = 2) -> relu
          -> conv2: Conv2d(32, kernel = 3, padding = 1)
    }

    pub Lenient(x: [B, 3, 224, 224]) {
        x -> conv1: Conv2d(32, kernel = 3, stride = 2)
    }
}

fn main() {}
