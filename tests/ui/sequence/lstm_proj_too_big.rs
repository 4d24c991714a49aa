use netdsl::network;

network! {
    /// `proj_size` must be smaller than `hidden_size`.
    pub Net(x: [B, T, 16]) -> [B, T, 64] {
        x -> lstm: LSTM(32, proj_size = 64)
    }
}

fn main() {}
