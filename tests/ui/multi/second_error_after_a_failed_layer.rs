use netdsl::network;

// LeNet with two independent mistakes: `conv1` reads 3 channels from a
// grey image, and `fc2` expects 100 features where `fc1` gives 120. The
// sizes after `conv1` are unknown, but `fc1`'s 120 is not: both are
// reported in one build, and nothing that follows from the first.
network! {
    pub LeNet(x: [B, 1, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(3 -> 6, kernel = 5) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)
          -> flatten
          -> fc1: Linear(400 -> 120) -> relu
          -> fc2: Linear(100 -> 84) -> relu
          -> fc3: Linear(10)
    }
}

fn main() {}
