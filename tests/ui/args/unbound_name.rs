use netdsl::network;

network! {
    /// `hidden` is bound nowhere; in the block, `ouT` is a typo of `out`.
    block Head(x: [B, F], out: usize) -> [B, out] { x -> fc: Linear(ouT) }
    pub Mlp(x: [B, 784]) -> [B, 10] {
        x -> fc1: Linear(hidden) -> relu -> head: Head(10)
    }
}

fn main() {}
