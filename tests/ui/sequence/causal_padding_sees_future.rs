use netdsl::network;

network! {
    pub Net(x: [B, 4, T]) {
        x -> conv: Conv1d(8, kernel = 3, dilation = 2, padding = 2, causal = true)
    }
}

fn main() {}
