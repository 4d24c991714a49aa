use netdsl::network;

network! {
    /// VGG-BN's batch norm sized for the next stage.
    pub Vgg(x: [B, 3, 32, 32]) {
        x -> conv1: Conv2d(64, kernel = 3, padding = 1) -> bn1: BatchNorm2d(128) -> relu -> max_pool(2)
    }
}

fn main() {}
