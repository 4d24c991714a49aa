//! The expansion compiles without warnings under `#![deny(warnings)]`, with
//! the user's own `Result`, `Tensor`, `Device` and `Error` in scope, and for a
//! private network whose methods are never called.
#![deny(warnings)]

#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Tensor;
#[allow(dead_code)]
struct Device;
#[allow(dead_code)]
struct Error;
#[allow(dead_code)]
mod candle {}

netdsl::network! {
    Unused(x: [B, 3, 8, 8]) {
        x -> conv: Conv2d(4, kernel = 3, padding = same, bias = false) -> tanh
          -> flatten -> head: Linear(2, bias = false) -> sigmoid
    }
    pub(crate) Used(image: [N, 2, 9, 7]) -> [N, 4, 3, 4] {
        image -> c: Conv2d(2 -> 4, kernel = (3, 1), stride = (3, 2), padding = (0, 0, 1, 1), groups = 2)
    }
}

#[test]
fn private_networks_and_user_names_compile() {
    let dev = netdsl::candle::Device::Cpu;
    let net = Used::new_seeded(1, &dev).unwrap();
    let x = netdsl::candle::Tensor::ones((2, 2, 9, 7), netdsl::candle::DType::F32, &dev).unwrap();
    assert_eq!(net.forward(&x).unwrap().dims(), &[2, 4, 3, 4]);
}
