//! Graph syntax whose meaning a test must pin: operator precedence between
//! tensors, `repeat` with a computed count, numbering across unnamed `seq`s
//! in a block, and run-time size rules that name the block use they come
//! from.

use netdsl::candle::{DType, Device, Tensor};
use netdsl::network;

mod common;

network! {
    /// `*` binds tighter than `+` and `-`: `x + x * x - x` is `x * x`.
    Precedence(x: [B, 3]) -> [B, 3] {
        x + x * x - x
    }

    block Stage(x: [B, C, H, W], n: usize, out: usize) {
        x -> first: Conv2d(out, kernel = 3, padding = 1)
          -> rest: repeat (n - 1) { Conv2d(out, kernel = 3, padding = 1) -> relu }
    }

    block Twice(x: [B, C, H, W]) {
        x -> seq { Conv2d(C, kernel = 1) -> relu } -> seq { Conv2d(C, kernel = 1) }
    }

    block Down(x: [B, C, H, W], out: usize) {
        x -> pool: max_pool(2) -> conv: Conv2d(out, kernel = 3, padding = 1)
    }

    Staged(x: [B, 3, H, W]) {
        x -> s: Stage(3, 8) -> t: Twice -> d4: Down(16)
    }
}

#[test]
fn multiplication_binds_tighter_than_addition() {
    let dev = Device::Cpu;
    let net = Precedence::new_seeded(0, &dev).unwrap();
    let x = Tensor::new(&[[1f32, 2., 3.], [-1., 0.5, 4.]], &dev).unwrap();
    let y = net.forward(&x).unwrap();
    assert_eq!(common::rel_err(&x.sqr().unwrap(), &y), 0.0);
}

#[test]
fn computed_repeat_counts_and_seq_numbering() {
    let names: Vec<&str> = Staged::MANIFEST
        .iter()
        .map(|s| s.name)
        .filter(|n| n.ends_with("weight"))
        .collect();
    assert_eq!(
        names,
        [
            "s.first.weight",
            "s.rest.0.0.weight",
            "s.rest.1.0.weight",
            // The second unnamed seq goes on from the first: 0, 1, then 2.
            "t.0.weight",
            "t.2.weight",
            "d4.conv.weight",
        ]
    );
}

#[test]
fn size_rules_from_a_block_name_its_use() {
    let dev = Device::Cpu;
    let net = Staged::new_seeded(0, &dev).unwrap();
    let ok = Tensor::zeros((1, 3, 8, 6), DType::F32, &dev).unwrap();
    assert_eq!(net.forward(&ok).unwrap().dims(), &[1, 16, 4, 3]);
    let odd = Tensor::zeros((1, 3, 7, 6), DType::F32, &dev).unwrap();
    let e = net.forward(&odd).unwrap_err().to_string();
    assert!(
        e.contains("dim 2 (`H`) is 7, but must be a multiple of 2")
            && e.contains("`pool` in `d4`")
            && e.contains("try 6 or 8"),
        "{e}"
    );
}
