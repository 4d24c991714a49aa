// An imported block keeps its name: its struct and its uses are named by it.
mod blocks {
    netdsl::network! {
        pub block Head(x: [B, C, H, W], classes: usize) -> [B, classes] {
            x -> pool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(classes)
        }
    }
}

mod nets {
    netdsl::network! {
        use crate::blocks::Head as Classifier;

        pub Net(x: [B, 3, 32, 32]) -> [B, 10] {
            x -> conv: Conv2d(32, kernel = 3, padding = 1) -> relu -> head: Classifier(10)
        }
    }
}

fn main() {}
