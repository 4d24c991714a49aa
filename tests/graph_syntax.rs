//! Graph syntax whose meaning a test must pin: operator precedence between
//! tensors, `repeat` with a computed count, numbering across unnamed `seq`s
//! in a block, run-time size rules that name the block use they come
//! from, named values (`let hidden = C * t;`, computed defaults), and a
//! chain that ends in `chunk`, bound by a tuple.

use netdsl::candle::{DType, Device, Tensor};
use netdsl::network;

mod common;

network! {
    /// `*` binds tighter than `+` and `-`: `x + x * x - x` is `x * x`.
    Precedence(x: [B, 3]) -> [B, 3] {
        x + x * x - x
    }

    /// Three unnamed `max_pool(2)`, two unnamed `cat`s: run-time messages
    /// and the summary tell them apart by number.
    Pools(x: [B, 1, H, W]) {
        x -> max_pool(2) -> relu -> max_pool(2) -> max_pool(2) -> c: Conv2d(2, kernel = 1)
    }

    Cats(x: [B, 1, 4, 4]) -> [B, 4, 4, 4] {
        cat(cat(x, x, dim = 1), cat(x, x, dim = 1), dim = 1)
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

    /// MobileNetV2's expansion written with named values: the hidden width
    /// is a default computed from the input's channels.
    block Inverted(x: [B, C, H, W], out: usize, t: usize = 6, hidden: usize = C * t) -> [B, out, H, W] {
        let squeeze = hidden / 4;
        x -> expand: Conv2d(hidden, kernel = 1) : [B, hidden, H, W] -> relu6
          -> reduce: Conv2d(squeeze, kernel = 1)
          -> project: Conv2d(out, kernel = 1)
    }

    /// A gated linear unit: the chain's output split in two by `chunk`.
    GluChain(x: [B, 4, H, W]) -> [B, 4, H, W] {
        let (a, gate) = x -> proj: Conv2d(8, kernel = 1) -> chunk(2, dim = 1);
        a * (gate -> sigmoid)
    }

    /// The same, with the split written around the chain.
    GluHead(x: [B, 4, H, W]) -> [B, 4, H, W] {
        let (a, gate) = chunk(x -> proj: Conv2d(8, kernel = 1), 2, dim = 1);
        a * (gate -> sigmoid)
    }

    Named(x: [B, 4, H, W]) -> [B, 10] {
        let width = 2 * 4;
        let half = H / 2;
        x -> a: Inverted(width) -> b: Inverted(width, t = 2) -> max_pool(2) : [B, width, half, W / 2]
          -> c: Inverted(width, hidden = 12)
          -> gap: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(width -> 10)
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
    // An odd size rounds down, as in PyTorch.
    let odd = Tensor::zeros((1, 3, 7, 6), DType::F32, &dev).unwrap();
    assert_eq!(net.forward(&odd).unwrap().dims(), &[1, 16, 3, 3]);
    let tiny = Tensor::zeros((1, 3, 1, 6), DType::F32, &dev).unwrap();
    let e = net.forward(&tiny).unwrap_err().to_string();
    assert!(
        e.contains("dim 2 (`H`) is 1, but must be at least 2") && e.contains("`pool` in `d4`"),
        "{e}"
    );
}

#[test]
fn named_values_and_computed_defaults_size_the_layers() {
    let shape = |name: &str| {
        Named::MANIFEST
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .shape
            .to_vec()
    };
    // `a`: C = 4, t = 6 -> hidden 24, squeeze 6; `b`: C = 8, t = 2 -> 16, 4;
    // `c`: hidden given, 12 -> squeeze 3.
    assert_eq!(shape("a.expand.weight"), [24, 4, 1, 1]);
    assert_eq!(shape("a.reduce.weight"), [6, 24, 1, 1]);
    assert_eq!(shape("b.expand.weight"), [16, 8, 1, 1]);
    assert_eq!(shape("b.reduce.weight"), [4, 16, 1, 1]);
    assert_eq!(shape("c.expand.weight"), [12, 8, 1, 1]);
    assert_eq!(shape("c.reduce.weight"), [3, 12, 1, 1]);
    assert_eq!(shape("fc.weight"), [10, 8]);
    let dev = Device::Cpu;
    let net = Named::new_seeded(0, &dev).unwrap();
    let x = Tensor::zeros((2, 4, 6, 10), DType::F32, &dev).unwrap();
    assert_eq!(net.forward(&x).unwrap().dims(), &[2, 10]);
}

#[test]
fn a_chain_may_end_in_chunk() {
    let dev = Device::Cpu;
    let chain = GluChain::new_seeded(3, &dev).unwrap();
    let head = GluHead::new_seeded(3, &dev).unwrap();
    let x = Tensor::randn(0f32, 1., (2, 4, 3, 5), &dev).unwrap();
    let y = chain.forward(&x).unwrap();
    assert_eq!(y.dims(), &[2, 4, 3, 5]);
    assert_eq!(common::rel_err(&head.forward(&x).unwrap(), &y), 0.0);
    // By hand: the convolution's 8 channels, the first 4 gated by the last 4.
    let p = chain.proj.weight.reshape((8, 4)).unwrap();
    let xs = x.permute((0, 2, 3, 1)).unwrap().reshape((30, 4)).unwrap();
    let z = xs
        .matmul(&p.t().unwrap())
        .unwrap()
        .broadcast_add(&chain.proj.bias)
        .unwrap();
    let want = z
        .narrow(1, 0, 4)
        .unwrap()
        .mul(&sigmoid(&z.narrow(1, 4, 4).unwrap()))
        .unwrap();
    let got = y.permute((0, 2, 3, 1)).unwrap().reshape((30, 4)).unwrap();
    assert!(common::rel_err(&want, &got) < 1e-5);
}

fn sigmoid(t: &Tensor) -> Tensor {
    (t.neg().unwrap().exp().unwrap() + 1.0)
        .unwrap()
        .recip()
        .unwrap()
}

#[test]
fn unnamed_layers_written_alike_are_numbered() {
    let dev = Device::Cpu;
    let net = Pools::new_seeded(0, &dev).unwrap();
    let small = Tensor::zeros((1, 1, 7, 8), DType::F32, &dev).unwrap();
    let e = net.forward(&small).unwrap_err().to_string();
    assert!(
        e.contains("must be at least 8") && e.contains("`max_pool(2) #3`"),
        "{e}"
    );
    let rows: Vec<&str> = Pools::SUMMARY
        .lines()
        .filter_map(|l| l.split("  ").next())
        .filter(|l| l.starts_with("max_pool"))
        .collect();
    assert_eq!(rows, ["max_pool(2) #1", "max_pool(2) #2", "max_pool(2) #3"]);
    // One `relu`: no number.
    assert!(Pools::SUMMARY.lines().any(|l| l.starts_with("relu ")));
    let cats: Vec<&str> = Cats::SUMMARY
        .lines()
        .filter(|l| l.contains("cat"))
        .filter_map(|l| l.split("  ").next())
        .collect();
    assert_eq!(cats, ["cat #1", "cat #2", "cat #3"], "{}", Cats::SUMMARY);
}
