use netdsl::network;

network! {
    /// A block gives one tensor.
    block Enc(x: [B, T, F], hidden: usize) {
        let (y, h) = x -> gru: GRU(hidden);
        (y, h)
    }
    pub Net(x: [B, 7, 16]) { x -> enc: Enc(32) }
}

fn main() {}
