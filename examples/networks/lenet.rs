network! {
    /// LeNet-5 (LeCun et al., 1998) for 28x28 digits, as in the lecture:
    /// two 5x5 convolutions with max pooling, three fully connected layers.
    pub LeNet(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(1 -> 6, kernel = 5, padding = 2) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)  : [B, 16, 5, 5]
          -> flatten
          -> fc1: Linear(400 -> 120) -> relu
          -> fc2: Linear(84) -> relu
          -> fc3: Linear(10)
    }
}
