// Only a block with a visibility (`pub`, `pub(crate)`, ..) is shared: a
// private one emits no macro to import.
mod blocks {
    netdsl::network! {
        block Head(x: [B, C, H, W], classes: usize) -> [B, classes] {
            x -> pool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(classes)
        }

        pub Net(x: [B, 3, 8, 8]) -> [B, 2] {
            x -> head: Head(2)
        }
    }
}

mod nets {
    netdsl::network! {
        use crate::blocks::Head;

        pub Net(x: [B, 3, 32, 32]) -> [B, 10] {
            x -> head: Head(10)
        }
    }
}

fn main() {}
