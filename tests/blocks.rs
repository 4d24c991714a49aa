//! Reusable blocks against PyTorch: a small ResNet built from torchvision's
//! `BasicBlock` (eval, unfolded, one SGD step), a same-padded restoration
//! U-Net of `DoubleConv` blocks run at two input sizes with one set of
//! weights, the input-size rules its pools put on `H` and `W`, the
//! `chunk`/`split`/`crop` ops, and a block network's state (save/load,
//! names, trainable variables, modes).
//! Fixtures: `scripts/gen_block_fixtures.py`.
//!
//! The networks live here rather than under `examples/networks/`, whose every
//! file gets an expansion snapshot.

use std::collections::HashMap;

use netdsl::candle::{DType, Device, Tensor};
use netdsl::network;
use netdsl::train::{cross_entropy, Optimizer, Sgd, SgdConfig};

mod common;
use common::{formula_input, metadata_list, rel_err, state_dict, tensors};

network! {
    /// ResNet's basic block, as torchvision's `BasicBlock`.
    pub block BasicBlock(x: [B, C, H, W], out: usize, stride: usize = 1) -> [B, out, (H - 1) / stride + 1, (W - 1) / stride + 1] {
        let y = x -> conv1: Conv2d(out, kernel = 3, stride = stride, padding = 1, bias = false)
                  -> bn1: BatchNorm2d -> relu
                  -> conv2: Conv2d(out, kernel = 3, padding = 1, bias = false) -> bn2: BatchNorm2d;
        let shortcut = if stride != 1 || C != out {
            x -> downsample: seq { Conv2d(out, kernel = 1, stride = stride, bias = false) -> BatchNorm2d }
        } else {
            x
        };
        (y + shortcut) -> relu
    }

    /// A CIFAR-sized ResNet: widths 8/16/32, no max pooling.
    pub ResNetSmall(x: [B, 3, 32, 32]) -> [B, 10] {
        x -> conv1: Conv2d(8, kernel = 3, padding = 1, bias = false) -> bn1: BatchNorm2d -> relu
          -> layer1: repeat 2 BasicBlock(8)
          -> layer2: seq { BasicBlock(16, stride = 2) -> BasicBlock(16) }
          -> layer3: seq { BasicBlock(32, stride = 2) -> BasicBlock(32) }
          -> avgpool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(10)
    }

    /// The same network over any image size: strides round down as in
    /// PyTorch (33 x 27 gives 17 x 14, then 9 x 7).
    pub ResNetSmallAny(x: [B, 3, H, W]) -> [B, 10] {
        x -> conv1: Conv2d(8, kernel = 3, padding = 1, bias = false) -> bn1: BatchNorm2d -> relu
          -> layer1: repeat 2 BasicBlock(8)
          -> layer2: seq { BasicBlock(16, stride = 2) -> BasicBlock(16) }
          -> layer3: seq { BasicBlock(32, stride = 2) -> BasicBlock(32) } : [B, 32, (H + 3) / 4, (W + 3) / 4]
          -> avgpool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(10)
    }

    /// Two same-padded 3x3 convolutions with batch norm, in a child `conv`.
    pub block DoubleConv(x: [B, C, H, W], out: usize) -> [B, out, H, W] {
        x -> conv: seq {
            Conv2d(out, kernel = 3, padding = 1, bias = false) -> BatchNorm2d -> ReLU
            -> Conv2d(out, kernel = 3, padding = 1, bias = false) -> BatchNorm2d -> ReLU
        }
    }

    /// A restoration U-Net over any size whose sides are multiples of 4.
    pub RestoreUNetSym(x: [B, 1, H, W]) -> [B, 1, H, W] {
        let e1 = x -> inc: DoubleConv(8);
        let e2 = e1 -> pool1: MaxPool2d(2) -> down1: DoubleConv(16);
        let b = e2 -> pool2: MaxPool2d(2) -> down2: DoubleConv(32);
        let u2 = b -> up2: ConvTranspose2d(16, kernel = 2, stride = 2);
        let d2 = cat(e2, u2, dim = 1) -> dec2: DoubleConv(16);
        let u1 = d2 -> up1: ConvTranspose2d(8, kernel = 2, stride = 2);
        let r = cat(e1, u1, dim = 1) -> dec1: DoubleConv(8) -> out: Conv2d(1, kernel = 1);
        x + r
    }

    // Every piece of a chunk/split must be used, and a network returns one
    // tensor: the pieces are concatenated back in another order.
    Chunk2(x: [B, 7, H, W]) -> [B, 7, H, W] { let (a, b) = chunk(x, 2, dim = 1); cat(b, a, dim = 1) }
    Chunk3(x: [B, 7, H, W]) -> [B, 7, H, W] { let (a, b, c) = chunk(x, 3, dim = 1); cat(c, b, a, dim = 1) }
    SplitList(x: [B, 7, H, W]) -> [B, 7, H, W] { let (a, b) = split(x, [2, 5], dim = 1); cat(b, a, dim = 1) }
    SplitInt(x: [B, 7, H, W]) -> [B, 7, H, W] { let (a, b, c) = split(x, 3, dim = 1); cat(c, b, a, dim = 1) }
    SplitW(x: [B, 2, 4, 5]) -> [B, 2, 4, 5] { let (a, b, c) = split(x, 2, dim = 3); cat(c, a, b, dim = 3) }
    CropCentre(x: [B, 2, 9, 10]) -> [B, 2, 6, 5] { crop(x, size = (6, 5)) }
    CropCentre8x7(x: [B, 2, 9, 10]) -> [B, 2, 8, 7] { crop(x, size = (8, 7)) }
    CropAt(x: [B, 2, 9, 10]) -> [B, 2, 4, 3] { crop(x, size = (4, 3), top = 5, left = 1) }
    /// A centre crop over symbolic H, W: its offsets are computed at run time.
    CropSym(x: [B, 2, H, W]) -> [B, 2, 4, 3] { crop(x, size = (4, 3)) }
}

const RESNET: &str = "blocks_resnet_small.safetensors";
const UNET: &str = "blocks_restore_unet.safetensors";
const OPS: &str = "blocks_ops.safetensors";

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

/// Bit-exact equality (values, shape, dtype).
fn same_bits(a: &Tensor, b: &Tensor) -> bool {
    a.dims() == b.dims()
        && a.dtype() == b.dtype()
        && a.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .zip(
                b.flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap(),
            )
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

fn check(what: &str, ours: &Tensor, torch: &Tensor) -> f32 {
    let err = rel_err(ours, torch);
    eprintln!("{what}: relative error {err:e}");
    assert!(
        err <= 1e-4,
        "{what}: |netdsl - torch| / max(1, max|torch|) = {err}"
    );
    err
}

fn resnet() -> ResNetSmall {
    ResNetSmall::from_tensors(state_dict(RESNET), &Device::Cpu).unwrap()
}

#[test]
fn resnet_over_any_size_matches_pytorch_at_odd_sizes() {
    let io = tensors(RESNET);
    let x = &io["input_odd"];
    assert_eq!(x.dims(), &[2, 3, 33, 27]);
    let mut net = ResNetSmallAny::from_tensors(state_dict(RESNET), &Device::Cpu).unwrap();
    net.eval();
    check(
        "ResNetSmallAny at 33 x 27, folded",
        &net.forward(x).unwrap(),
        &io["output_odd"],
    );
    net.set_fusion(false);
    check(
        "ResNetSmallAny at 33 x 27",
        &net.forward(x).unwrap(),
        &io["output_odd"],
    );
    // At 32 x 32 it is the fixed-size network.
    net.set_fusion(true);
    check(
        "ResNetSmallAny at 32 x 32",
        &net.forward(&io["input"]).unwrap(),
        &io["output"],
    );
    // One row still runs (every window is padded); none is an error.
    let one = Tensor::zeros((1, 3, 1, 5), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(net.forward(&one).unwrap().dims(), &[1, 10]);
    let none = Tensor::zeros((1, 3, 0, 5), DType::F32, &Device::Cpu).unwrap();
    assert!(net.forward(&none).is_err());
}

#[test]
fn resnet_small_matches_pytorch_folded_and_unfolded() {
    let io = tensors(RESNET);
    let x = formula_input((2, 3, 32, 32));
    assert!(
        same_bits(&x, &io["input"]),
        "the formula input differs from the fixture's"
    );
    let mut net = resnet();
    net.eval();
    assert!(!ResNetSmall::FUSIONS.is_empty());
    let folded = net.forward(&x).unwrap();
    check("ResNetSmall, folded", &folded, &io["output"]);
    net.set_fusion(false);
    let plain = net.forward(&x).unwrap();
    check("ResNetSmall, unfolded", &plain, &io["output"]);
    let between = rel_err(&folded, &plain);
    assert!(between < 1e-5, "folded vs unfolded: {between}");
    net.set_fusion(true);
    assert!(same_bits(&net.forward(&x).unwrap(), &folded));

    // The running statistics matter: reset, the output moves.
    let reset: HashMap<String, Tensor> = state_dict(RESNET)
        .into_iter()
        .map(|(k, v)| {
            let v = if k.ends_with("running_mean") {
                v.zeros_like().unwrap()
            } else if k.ends_with("running_var") {
                v.ones_like().unwrap()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    let moved = ResNetSmall::from_tensors(reset, &Device::Cpu)
        .unwrap()
        .forward(&x)
        .unwrap();
    assert!(rel_err(&moved, &io["output"]) > 0.1);
}

/// The block's struct names what differs between uses after the block's
/// own names: each use holds its `stride`, its input's `C` and its `out`,
/// and the shortcut is the block's condition over them.
#[test]
fn block_fields_are_named_after_its_parameters() {
    let net = resnet();
    let uses = [
        (&net.layer1_0, 1, 8, 8),
        (&net.layer1_1, 1, 8, 8),
        (&net.layer2_0, 2, 8, 16),
        (&net.layer2_1, 1, 16, 16),
        (&net.layer3_0, 2, 16, 32),
        (&net.layer3_1, 1, 32, 32),
    ];
    for (i, (block, stride, c, out)) in uses.into_iter().enumerate() {
        assert_eq!(
            (block.stride, block.C, block.out),
            (stride, c, out),
            "use {i}"
        );
    }
}

/// One block built and run alone: `BasicBlock::new(source, C, out,
/// stride)` (and `from_tensors`, `manifest`, `new_seeded`) for the values
/// its uses in this invocation have, under the block's own state_dict
/// names; the same weights give the same output as the use inside the
/// network (whose output equals PyTorch's); values no use has are a typed
/// error naming the compiled ones.
#[test]
fn a_block_is_built_and_run_alone() {
    let dev = Device::Cpu;
    assert_eq!(
        BasicBlock::CONFIGURATIONS,
        [
            "C = 8, out = 8, stride = 1",
            "C = 8, out = 16, stride = 2",
            "C = 16, out = 16, stride = 1",
            "C = 16, out = 32, stride = 2",
            "C = 32, out = 32, stride = 1",
        ]
    );
    let net = resnet();
    let weights = state_dict(RESNET);
    for (prefix, (c, out, stride), in_network, size) in [
        ("layer2.0.", (8, 16, 2), &net.layer2_0, 9),
        ("layer3.1.", (32, 32, 1), &net.layer3_1, 8),
    ] {
        let own: HashMap<String, Tensor> = weights
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
            .collect();
        // The manifest is the network's entries of that use, prefix dropped.
        let names: Vec<&str> = BasicBlock::manifest(c, out, stride)
            .unwrap()
            .iter()
            .map(|s| s.name)
            .collect();
        let want: Vec<&str> = ResNetSmall::MANIFEST
            .iter()
            .filter_map(|s| s.name.strip_prefix(prefix))
            .collect();
        assert_eq!(names, want, "{prefix}");
        assert_eq!(names.contains(&"downsample.0.weight"), stride != 1);
        let alone = BasicBlock::from_tensors(own, &dev, c, out, stride).unwrap();
        assert_eq!((alone.C, alone.out, alone.stride), (c, out, stride));
        let x = formula_input((2, c, size, size));
        let y = alone.forward_eval(&x).unwrap();
        let cx_rng = netdsl::Generator::seeded(0);
        let cx = netdsl::BlockCx {
            training: false,
            fusion: true,
            rng: &cx_rng,
        };
        let (h, w) = ((size - 1) / stride + 1, (size - 1) / stride + 1);
        assert_eq!(y.dims(), &[2, out, h, w]);
        assert!(
            same_bits(&y, &in_network.forward(&x, &cx).unwrap()),
            "{prefix}"
        );
        // A missing tensor is named as the block names it.
        let mut short: HashMap<String, Tensor> = HashMap::new();
        short.insert(
            "conv1.weight".into(),
            weights[&format!("{prefix}conv1.weight")].clone(),
        );
        let err = BasicBlock::from_tensors(short, &dev, c, out, stride).unwrap_err();
        assert!(err.to_string().contains("bn1.running_var"), "{err}");
    }
    let seeded = BasicBlock::new_seeded(3, &dev, 16, 32, 2).unwrap();
    let again = BasicBlock::new_seeded(3, &dev, 16, 32, 2).unwrap();
    let x = formula_input((1, 16, 6, 6));
    assert!(same_bits(
        &seeded.forward_eval(&x).unwrap(),
        &again.forward_eval(&x).unwrap()
    ));
    // Values no use has: the code for them was never compiled or checked.
    let err = BasicBlock::new_seeded(0, &dev, 3, 8, 3).unwrap_err();
    assert!(
        matches!(
            err,
            netdsl::Error::BlockConfiguration {
                block: "BasicBlock",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("C = 3, out = 8, stride = 3"), "{text}");
    assert!(text.contains("C = 8, out = 16, stride = 2"), "{text}");
    // A wrong input is an error, not a panic.
    let alone = BasicBlock::new_seeded(0, &dev, 8, 8, 1).unwrap();
    assert!(alone.forward_eval(&formula_input((1, 5, 4, 4))).is_err());
}

#[test]
fn resnet_small_manifest_equals_state_dict() {
    let state = state_dict(RESNET);
    let order = metadata_list(RESNET, "state_dict_order");
    let names: Vec<&str> = ResNetSmall::MANIFEST.iter().map(|s| s.name).collect();
    assert_eq!(
        names, order,
        "manifest names and order vs PyTorch's state_dict"
    );
    for spec in ResNetSmall::MANIFEST {
        let t = &state[spec.name];
        assert_eq!(spec.shape, t.dims(), "{}", spec.name);
        assert_eq!(spec.dtype, t.dtype(), "{}", spec.name);
    }
    let trainable: Vec<&str> = ResNetSmall::MANIFEST
        .iter()
        .filter(|s| s.trainable)
        .map(|s| s.name)
        .collect();
    assert_eq!(
        trainable,
        metadata_list(RESNET, "parameter_order"),
        "trainable entries vs named_parameters()"
    );
    let count: usize = ResNetSmall::MANIFEST
        .iter()
        .filter(|s| s.trainable)
        .map(|s| s.shape.iter().product::<usize>())
        .sum();
    assert_eq!(ResNetSmall::PARAMETERS, count);
}

#[test]
fn resnet_small_one_sgd_step_matches_pytorch() {
    let io = tensors(RESNET);
    let x = formula_input((2, 3, 32, 32));
    let y = Tensor::new(&[3u32, 7], &Device::Cpu).unwrap();
    let mut net = resnet();
    net.train();
    let vars = net.vars().unwrap();
    assert_eq!(
        vars.len(),
        ResNetSmall::MANIFEST.iter().filter(|s| s.trainable).count()
    );
    let mut opt = Sgd::new(
        vars,
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    let out = net.forward(&x).unwrap();
    check("train-mode output", &out, &io["train.output"]);
    let loss = cross_entropy(&out, &y, 0.0).unwrap();
    check("loss", &loss, &io["train.loss"]);
    let grads = loss.backward().unwrap();
    let mut with_grads = 0;
    for (name, var) in net.named_vars().unwrap() {
        if let Some(expected) = io.get(&format!("grad.{name}")) {
            let ours = grads.get(var.as_tensor()).unwrap();
            check(&format!("gradient of {name}"), ours, expected);
            with_grads += 1;
        }
    }
    assert_eq!(with_grads, 8);
    opt.step(&grads).unwrap();

    let mut checked = 0;
    let mut worst = 0f32;
    for (name, t) in net.named_tensors() {
        if let Some(expected) = io.get(&format!("train.{name}")) {
            worst = worst.max(check(&format!("after the step: {name}"), t, expected));
            checked += 1;
        }
    }
    // 8 parameters and the 2 statistics of each of the 15 batch norms (the
    // stem's, 2 per block, 1 per downsample).
    assert_eq!(checked, 8 + 2 * 15);
    eprintln!("worst after the step: {worst:e}");
    assert_eq!(
        batches_tracked(&net, "layer2.0.bn1"),
        4,
        "num_batches_tracked counts the training forward"
    );

    net.eval();
    check(
        "eval output after the step",
        &net.forward(&x).unwrap(),
        &io["train.eval_output"],
    );
}

/// A batch norm's `num_batches_tracked`, read through `named_tensors`.
fn batches_tracked(net: &ResNetSmall, bn: &str) -> i64 {
    let name = format!("{bn}.num_batches_tracked");
    let ts = net.named_tensors();
    let (_, t) = ts.iter().find(|(n, _)| *n == name).unwrap();
    t.to_scalar::<i64>().unwrap()
}

#[test]
fn restore_unet_runs_at_two_sizes_with_the_same_weights() {
    let io = tensors(UNET);
    let order = metadata_list(UNET, "state_dict_order");
    let names: Vec<&str> = RestoreUNetSym::MANIFEST.iter().map(|s| s.name).collect();
    assert_eq!(names, order);
    let net = RestoreUNetSym::from_tensors(state_dict(UNET), &Device::Cpu).unwrap();
    for (tag, shape) in [("a", (1, 1, 16, 16)), ("b", (2, 1, 24, 20))] {
        let x = formula_input(shape);
        assert!(same_bits(&x, &io[&format!("input_{tag}")]));
        let out = net.forward(&x).unwrap();
        check(
            &format!("RestoreUNetSym at {shape:?}"),
            &out,
            &io[&format!("output_{tag}")],
        );
    }
    // Unfolded too (nothing to fold here is fine: the output must not change).
    let mut net = net;
    net.set_fusion(false);
    let out = net.forward(&formula_input((2, 1, 24, 20))).unwrap();
    check(
        "RestoreUNetSym unfolded at (2, 1, 24, 20)",
        &out,
        &io["output_b"],
    );
}

fn unet_error(shape: (usize, usize, usize, usize)) -> String {
    let net = RestoreUNetSym::new_seeded(0, &Device::Cpu).unwrap();
    let x = Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
    match net.forward(&x) {
        Err(e @ netdsl::Error::InputShape { .. }) => e.to_string(),
        Err(e) => panic!("{shape:?}: not an InputShape error: {e}"),
        Ok(y) => panic!("{shape:?}: accepted, gave {:?}", y.dims()),
    }
}

#[test]
fn restore_unet_rejects_sizes_its_pools_cannot_take() {
    for (shape, axis) in [
        ((1, 1, 18, 16), "dim 2 (`H`) is 18"),
        ((2, 1, 16, 18), "dim 3 (`W`) is 18"),
    ] {
        let e = unet_error(shape);
        eprintln!("{e}");
        assert!(e.contains(axis), "{e}");
        assert!(e.contains("must be a multiple of 4"), "{e}");
        assert!(
            e.contains("the `cat` of `e1` and `u1` needs equal sizes"),
            "the merge that needs it: {e}"
        );
        assert!(e.contains("try 16 or 20"), "{e}");
    }
    for shape in [(1, 1, 2, 2), (1, 1, 0, 8)] {
        let e = unet_error(shape);
        eprintln!("{e}");
        assert!(e.contains("must be at least 4"), "{e}");
    }
    // Sizes that are multiples of 4, H and W different, are taken.
    let net = RestoreUNetSym::new_seeded(0, &Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 1, 4, 12), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(net.forward(&x).unwrap().dims(), &[1, 1, 4, 12]);
}

#[test]

fn restore_unet_too_small_names_the_layer() {
    let e = unet_error((1, 1, 2, 2));
    assert!(!e.contains(":  needs it"), "no layer named: {e}");
    assert!(e.contains("`pool"), "{e}");
}

#[test]
fn chunk_split_and_crop_match_pytorch() {
    let io = tensors(OPS);
    let x7 = formula_input((2, 7, 3, 4));
    let xw = formula_input((1, 2, 4, 5));
    let xc = formula_input((2, 2, 9, 10));
    let dev = &Device::Cpu;
    let cases: [(&str, Tensor); 8] = [
        ("chunk2", Chunk2::new(dev).unwrap().forward(&x7).unwrap()),
        ("chunk3", Chunk3::new(dev).unwrap().forward(&x7).unwrap()),
        (
            "split_list",
            SplitList::new(dev).unwrap().forward(&x7).unwrap(),
        ),
        (
            "split_int",
            SplitInt::new(dev).unwrap().forward(&x7).unwrap(),
        ),
        ("split_w", SplitW::new(dev).unwrap().forward(&xw).unwrap()),
        (
            "crop_centre",
            CropCentre::new(dev).unwrap().forward(&xc).unwrap(),
        ),
        (
            "crop_centre_8x7",
            CropCentre8x7::new(dev).unwrap().forward(&xc).unwrap(),
        ),
        ("crop_at", CropAt::new(dev).unwrap().forward(&xc).unwrap()),
    ];
    for (name, ours) in &cases {
        // Pure data movement: exactly equal.
        assert!(
            same_bits(ours, &io[*name]),
            "{name}: {ours} vs {}",
            io[*name]
        );
    }
    // One symbolic centre crop, two sizes with odd differences.
    let crop = CropSym::new(dev).unwrap();
    assert!(
        same_bits(&crop.forward(&xc).unwrap(), &io["crop_sym_a"]),
        "crop_sym_a"
    );
    let xs = formula_input((1, 2, 11, 8));
    assert!(
        same_bits(&crop.forward(&xs).unwrap(), &io["crop_sym_b"]),
        "crop_sym_b"
    );
    let small = formula_input((1, 2, 3, 3));
    let e = crop.forward(&small).unwrap_err().to_string();
    assert!(e.contains("must be at least 4"), "{e}");
    // Symbolic H, W in the chunk/split networks: another size runs too.
    let other = formula_input((1, 7, 5, 2));
    let (a, b) = (
        other.narrow(1, 0, 4).unwrap(),
        other.narrow(1, 4, 3).unwrap(),
    );
    let want = Tensor::cat(&[&b, &a], 1).unwrap();
    assert!(same_bits(
        &Chunk2::new(dev).unwrap().forward(&other).unwrap(),
        &want
    ));
}

/// Trains `net` one SGD step on the formula input, so that weights and
/// running statistics are no longer what they were loaded as.
fn step_resnet(net: &mut ResNetSmall) {
    net.train();
    let mut opt = Sgd::new(
        net.vars().unwrap(),
        SgdConfig {
            lr: 0.05,
            ..Default::default()
        },
    )
    .unwrap();
    let y = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
    let loss = cross_entropy(
        &net.forward(&formula_input((2, 3, 32, 32))).unwrap(),
        &y,
        0.0,
    )
    .unwrap();
    opt.backward_step(&loss).unwrap();
    net.eval();
}

#[test]
fn block_state_round_trips_bit_for_bit() {
    let x = formula_input((2, 3, 32, 32));
    let mut net = resnet();
    step_resnet(&mut net);
    let before = net.forward(&x).unwrap();
    let path = std::env::temp_dir().join(format!(
        "netdsl-blocks-resnet-{}.safetensors",
        std::process::id()
    ));
    net.save(&path).unwrap();
    ResNetSmall::check_weights(&path).unwrap();
    let back = ResNetSmall::load(&path, &Device::Cpu).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(
        same_bits(&back.forward(&x).unwrap(), &before),
        "ResNetSmall after save/load"
    );
    for ((n1, t1), (n2, t2)) in net.named_tensors().into_iter().zip(back.named_tensors()) {
        assert_eq!(n1, n2);
        assert!(same_bits(t1, t2), "{n1}");
    }

    // The U-Net too, at both sizes.
    let unet = RestoreUNetSym::from_tensors(state_dict(UNET), &Device::Cpu).unwrap();
    let path = std::env::temp_dir().join(format!(
        "netdsl-blocks-unet-{}.safetensors",
        std::process::id()
    ));
    unet.save(&path).unwrap();
    let back = RestoreUNetSym::load(&path, &Device::Cpu).unwrap();
    std::fs::remove_file(&path).ok();
    for shape in [(1, 1, 16, 16), (2, 1, 24, 20)] {
        let x = formula_input(shape);
        assert!(
            same_bits(&back.forward(&x).unwrap(), &unet.forward(&x).unwrap()),
            "{shape:?}"
        );
    }
}

#[test]
fn named_tensors_and_vars_follow_the_manifest() {
    let state = state_dict(RESNET);
    let mut net = resnet();
    // named_tensors: every manifest entry, in order, holding the tensor of
    // that name (not just zipped with the names).
    let named = net.named_tensors();
    assert_eq!(named.len(), ResNetSmall::MANIFEST.len());
    for ((name, t), spec) in named.iter().zip(ResNetSmall::MANIFEST) {
        assert_eq!(*name, spec.name);
        assert_eq!(t.dims(), spec.shape, "{name}");
        assert!(same_bits(t, &state[*name]), "{name} holds another tensor");
    }
    // named_vars: exactly the trainable entries, in order, each the loaded
    // tensor of its name.
    let trainable: Vec<_> = ResNetSmall::MANIFEST
        .iter()
        .filter(|s| s.trainable)
        .collect();
    let vars = net.named_vars().unwrap();
    assert_eq!(vars.len(), trainable.len());
    for ((name, v), spec) in vars.iter().zip(&trainable) {
        assert_eq!(*name, spec.name);
        assert!(
            same_bits(v.as_tensor(), &state[*name]),
            "{name} holds another tensor"
        );
    }
    assert!(!vars
        .iter()
        .any(|(n, _)| n.contains("running") || n.contains("num_batches")));
    assert_eq!(net.vars().unwrap().len(), trainable.len());

    // The U-Net's blocks the same way.
    let state = state_dict(UNET);
    let mut unet = RestoreUNetSym::from_tensors(state.clone(), &Device::Cpu).unwrap();
    for ((name, t), spec) in unet.named_tensors().iter().zip(RestoreUNetSym::MANIFEST) {
        assert_eq!(*name, spec.name);
        assert!(same_bits(t, &state[*name]), "{name}");
    }
    let n = RestoreUNetSym::MANIFEST
        .iter()
        .filter(|s| s.trainable)
        .count();
    let vars = unet.named_vars().unwrap();
    assert_eq!(vars.len(), n);
    for (name, v) in &vars {
        assert!(same_bits(v.as_tensor(), &state[*name]), "{name}");
    }
}

#[test]
fn modes_switch_without_changing_eval_outputs() {
    let x = formula_input((2, 3, 32, 32));
    let mut net = resnet();
    let eval = net.forward(&x).unwrap();
    // Switching modes without a forward leaves eval outputs bit-identical.
    net.train();
    assert!(net.is_training());
    net.eval();
    assert!(same_bits(&net.forward(&x).unwrap(), &eval));
    // A training forward uses the batch's statistics (another output) and
    // updates the running ones; eval then equals a fresh network built from
    // the updated state.
    net.train();
    let trained = net.forward(&x).unwrap();
    assert!(rel_err(&trained, &eval) > 1e-3);
    net.eval();
    let after = net.forward(&x).unwrap();
    let state: HashMap<String, Tensor> = net
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.copy().unwrap()))
        .collect();
    let fresh = ResNetSmall::from_tensors(state, &Device::Cpu).unwrap();
    assert!(same_bits(&fresh.forward(&x).unwrap(), &after));
    assert!(
        !same_bits(&after, &eval),
        "the training forward updated the running statistics"
    );
    assert!(max_abs(&after).is_finite());
}

/// The same ResNet written in other modules, from the root's `BasicBlock`:
/// `stages` imports it and defines its own shared block, `Stage`, from it;
/// `nets` imports `Stage` (which brings `BasicBlock` along) and `BasicBlock`
/// again (one copy is kept), and splices `Stage` into torchvision's `seq`s.
mod stages {
    netdsl::network! {
        use crate::BasicBlock;

        /// Two basic blocks, the first strided: spliced into a `seq`,
        /// they are its `0` and `1`.
        pub(crate) block Stage(x: [B, C, H, W], out: usize) -> [B, out, H / 2, W / 2] {
            x -> BasicBlock(out, stride = 2) -> BasicBlock(out)
        }
    }
}

mod nets {
    netdsl::network! {
        use crate::stages::Stage;
        use crate::BasicBlock;

        pub ResNetImported(x: [B, 3, 32, 32]) -> [B, 10] {
            x -> conv1: Conv2d(8, kernel = 3, padding = 1, bias = false) -> bn1: BatchNorm2d -> relu
              -> layer1: repeat 2 BasicBlock(8)
              -> layer2: seq { ..Stage(16) }
              -> layer3: seq { ..Stage(32) }
              -> avgpool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(10)
        }
    }
}

#[test]
fn a_block_imported_from_other_modules_builds_the_same_network() {
    use nets::ResNetImported;
    let names = |m: &[netdsl::ParamSpec]| -> Vec<(String, Vec<usize>)> {
        m.iter()
            .map(|s| (s.name.to_string(), s.shape.to_vec()))
            .collect()
    };
    assert_eq!(
        names(ResNetImported::MANIFEST),
        names(ResNetSmall::MANIFEST)
    );
    let io = tensors(RESNET);
    let x = formula_input((2, 3, 32, 32));
    let mut net = ResNetImported::from_tensors(state_dict(RESNET), &Device::Cpu).unwrap();
    net.eval();
    let mut local = resnet();
    local.eval();
    let y = net.forward(&x).unwrap();
    assert!(same_bits(&y, &local.forward(&x).unwrap()));
    check("ResNetImported", &y, &io["output"]);
}
