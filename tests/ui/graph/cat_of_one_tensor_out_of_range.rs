use netdsl::network;

network! {
    /// A `cat` of one tensor along a dim it does not have.
    pub Net(x: [B, 8, 32, 32]) { cat(x, dim = 4) }
}

fn main() {}
