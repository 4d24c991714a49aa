use netdsl::network;

network! {
    /// A block spliced into its own body would never end.
    block Loop(x: [B, C, H, W]) { x -> ReLU -> ..Loop }
    pub Net(x: [B, 8, 32, 32]) { x -> features: seq { ..Loop } }
}

fn main() {}
