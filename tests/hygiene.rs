//! The expansion compiles without warnings under `#![deny(warnings)]`, with
//! the user's own `Result`, `Tensor`, `Device` and `Error` in scope, and for a
//! private network whose methods are never called, and for private blocks
//! (one with an optional child and a float parameter, one used once, one
//! whose parameters are named like the generated constructors' locals).
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

    block Res(x: [B, C, H, W], out: usize, p: f64 = 0.1) {
        let y = x -> conv: Conv2d(out, kernel = 3, padding = 1) -> drop: Dropout(p);
        let s = if C != out { x -> proj: Conv2d(out, kernel = 1) } else { x };
        y + s
    }
    block Once(x: [B, C, H, W]) {
        x -> seq { BatchNorm2d -> relu }
    }
    // Parameters named like the locals of the generated constructors.
    block Locals(x: [B, C, H, W], source: usize, device: usize, next: usize, key: f64, data: bool) {
        x -> conv: Conv2d(source, kernel = device, padding = next, bias = data) -> drop: Dropout(key)
    }
    LocalNames(x: [B, 3, 5, 5]) {
        x -> l: Locals(4, device = 3, next = 1, key = 0.5, data = true)
    }
    WithBlocks(x: [B, 3, H, W]) {
        let (a, _) = chunk(x -> r1: Res(4) -> r2: Res(4, p = 0.2) -> once: Once, 2, dim = 1);
        a -> max_pool(2)
    }
}

#[test]
fn private_networks_and_user_names_compile() {
    let dev = netdsl::candle::Device::Cpu;
    let net = Used::new_seeded(1, &dev).unwrap();
    let x = netdsl::candle::Tensor::ones((2, 2, 9, 7), netdsl::candle::DType::F32, &dev).unwrap();
    assert_eq!(net.forward(&x).unwrap().dims(), &[2, 4, 3, 4]);
    let blocks = WithBlocks::new_seeded(1, &dev).unwrap();
    let x = netdsl::candle::Tensor::ones((1, 3, 6, 4), netdsl::candle::DType::F32, &dev).unwrap();
    assert_eq!(blocks.forward(&x).unwrap().dims(), &[1, 2, 3, 2]);
}

#[test]
fn a_block_whose_names_are_the_constructors_locals_builds_alone() {
    let dev = netdsl::candle::Device::Cpu;
    let alone = Locals::new_seeded(1, &dev, 3, 4, 3, 1, 0.5, true).unwrap();
    let x = netdsl::candle::Tensor::ones((1, 3, 5, 5), netdsl::candle::DType::F32, &dev).unwrap();
    assert_eq!(alone.forward_eval(&x).unwrap().dims(), &[1, 4, 5, 5]);
    assert!(Locals::new_seeded(1, &dev, 3, 4, 3, 1, 0.25, true).is_err());
    let net = LocalNames::new_seeded(1, &dev).unwrap();
    assert_eq!(net.forward(&x).unwrap().dims(), &[1, 4, 5, 5]);
}
