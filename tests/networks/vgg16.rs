network! {
    /// VGG-16 (Simonyan & Zisserman, 2014), configuration D: thirteen 3x3
    /// convolutions in five stages, each closed by 2x2 max pooling, then
    /// three fully connected layers.
    pub Vgg16(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv1_1: Conv2d(3 -> 64, kernel = 3, padding = 1) -> relu
          -> conv1_2: Conv2d(64, kernel = 3, padding = 1) -> relu -> max_pool(2)  : [B, 64, 112, 112]
          -> conv2_1: Conv2d(128, kernel = 3, padding = 1) -> relu
          -> conv2_2: Conv2d(128, kernel = 3, padding = 1) -> relu -> max_pool(2)  : [B, 128, 56, 56]
          -> conv3_1: Conv2d(256, kernel = 3, padding = 1) -> relu
          -> conv3_2: Conv2d(256, kernel = 3, padding = 1) -> relu
          -> conv3_3: Conv2d(256, kernel = 3, padding = 1) -> relu -> max_pool(2)  : [B, 256, 28, 28]
          -> conv4_1: Conv2d(512, kernel = 3, padding = 1) -> relu
          -> conv4_2: Conv2d(512, kernel = 3, padding = 1) -> relu
          -> conv4_3: Conv2d(512, kernel = 3, padding = 1) -> relu -> max_pool(2)  : [B, 512, 14, 14]
          -> conv5_1: Conv2d(512, kernel = 3, padding = 1) -> relu
          -> conv5_2: Conv2d(512, kernel = 3, padding = 1) -> relu
          -> conv5_3: Conv2d(512, kernel = 3, padding = 1) -> relu -> max_pool(2)  : [B, 512, 7, 7]
          -> flatten
          -> fc6: Linear(25088 -> 4096) -> relu
          -> fc7: Linear(4096) -> relu
          -> fc8: Linear(1000)
    }
}
