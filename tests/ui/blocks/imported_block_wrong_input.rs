// A block imported from another module is checked at its use exactly like
// a local one: the caret is on the use, the block's own lines in the notes.
mod blocks {
    netdsl::network! {
        pub block Head(x: [B, 64, H, W], classes: usize) -> [B, classes] {
            x -> pool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(classes)
        }
    }
}

mod nets {
    netdsl::network! {
        use crate::blocks::Head;

        pub Net(x: [B, 3, 32, 32]) -> [B, 10] {
            x -> conv: Conv2d(32, kernel = 3, padding = 1) -> relu -> head: Head(10)
        }
    }
}

fn main() {}
