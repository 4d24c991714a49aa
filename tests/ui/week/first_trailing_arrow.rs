use netdsl::network;

network! {
    /// A chain ending in `->`.
    pub Mlp(x: [B, 784]) -> [B, 10] {
        x -> fc1: Linear(128) -> relu -> fc2: Linear(10) ->
    }
}

fn main() {}
