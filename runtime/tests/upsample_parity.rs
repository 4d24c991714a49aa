//! Parity with PyTorch of `netdsl_runtime`'s up-sampling ops:
//! `conv_transpose2d` (with groups), `upsample_nearest2d`,
//! `upsample_bilinear2d`, `pixel_shuffle`, `pixel_unshuffle`, `center_crop`.
//!
//! The fixture `tests/fixtures/upsample.safetensors` (repo root) comes from
//! `scripts/gen_upsample_fixtures.py`: for each case `<case>.input`,
//! `<case>.output`, `<case>.gout` (a random upstream gradient) and
//! `<case>.grad_input` (`d sum(output * gout) / d input`); transposed
//! convolutions also have `<case>.weight` / `<case>.grad_weight` and, with a
//! bias, `<case>.bias` / `<case>.grad_bias`. `cases()` below mirrors the
//! script's `CASES` one to one.
//!
//! Tolerance: `1e-4 * max(1, max|torch|)` per compared tensor.

use std::collections::HashMap;
use std::sync::OnceLock;

use netdsl_runtime::candle::{DType, Device, Tensor, Var};
use netdsl_runtime::{
    center_crop, center_crop_offset, conv_transpose2d, pixel_shuffle, pixel_unshuffle,
    upsample_bilinear2d, upsample_nearest2d, ConvTranspose2dSpec, Result,
};

mod common;

#[derive(Clone, Copy, Debug)]
enum Op {
    ConvT(ConvTranspose2dSpec),
    Nearest(usize, usize),
    Bilinear(usize, usize, bool),
    Shuffle(usize),
    Unshuffle(usize),
    Crop(usize, usize),
}

impl Op {
    fn run(&self, x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>) -> Result<Tensor> {
        match *self {
            Op::ConvT(spec) => conv_transpose2d(x, w.expect("weight"), b, &spec),
            Op::Nearest(h, w) => upsample_nearest2d(x, (h, w)),
            Op::Bilinear(h, w, ac) => upsample_bilinear2d(x, (h, w), ac),
            Op::Shuffle(r) => pixel_shuffle(x, r),
            Op::Unshuffle(r) => pixel_unshuffle(x, r),
            Op::Crop(h, w) => center_crop(x, h, w),
        }
    }
}

fn ct(s: (usize, usize), p: (usize, usize), op: (usize, usize), d: (usize, usize), g: usize) -> Op {
    Op::ConvT(ConvTranspose2dSpec {
        stride: s,
        padding: p,
        output_padding: op,
        dilation: d,
        groups: g,
    })
}

const T: bool = true;
const F: bool = false;

/// Mirrors `CASES` in scripts/gen_upsample_fixtures.py (input shapes and
/// weight shapes are in the script).
fn cases() -> Vec<(&'static str, Op)> {
    vec![
        // ---- conv_transpose2d ----
        ("ct_k3", ct((1, 1), (0, 0), (0, 0), (1, 1), 1)),
        ("ct_k3_s2_p1_op1", ct((2, 2), (1, 1), (1, 1), (1, 1), 1)),
        ("ct_full", ct((2, 2), (1, 1), (1, 1), (2, 2), 2)),
        ("ct_full_nobias", ct((2, 2), (1, 1), (1, 1), (2, 2), 2)),
        ("ct_per_axis", ct((2, 3), (1, 0), (1, 2), (1, 2), 1)),
        ("ct_big_pad", ct((3, 3), (3, 2), (0, 0), (1, 1), 1)),
        ("ct_depthwise", ct((2, 2), (1, 1), (0, 0), (1, 1), 3)),
        ("ct_unet_up", ct((2, 2), (0, 0), (0, 0), (1, 1), 1)),
        // ---- nearest ----
        ("near_x2", Op::Nearest(8, 10)),
        ("near_5to7", Op::Nearest(7, 7)),
        ("near_7to5", Op::Nearest(5, 5)),
        ("near_mixed", Op::Nearest(7, 3)),
        ("near_x3_identity_w", Op::Nearest(9, 6)),
        // ---- bilinear ----
        ("bil_up_ac", Op::Bilinear(9, 13, T)),
        ("bil_up", Op::Bilinear(9, 13, F)),
        ("bil_down_ac", Op::Bilinear(4, 5, T)),
        ("bil_down", Op::Bilinear(4, 5, F)),
        ("bil_mixed_ac", Op::Bilinear(7, 3, T)),
        ("bil_mixed", Op::Bilinear(7, 3, F)),
        ("bil_x2", Op::Bilinear(8, 8, F)),
        ("bil_to1_ac", Op::Bilinear(1, 6, T)),
        ("bil_to1", Op::Bilinear(1, 6, F)),
        ("bil_from1_ac", Op::Bilinear(4, 5, T)),
        // ---- pixel shuffle ----
        ("shuf_r2", Op::Shuffle(2)),
        ("shuf_r3", Op::Shuffle(3)),
        ("unshuf_r2", Op::Unshuffle(2)),
        ("unshuf_r3", Op::Unshuffle(3)),
        // ---- centre crop ----
        ("crop_d3_d5", Op::Crop(9, 6)),
        ("crop_d1_d7", Op::Crop(7, 3)),
        ("crop_d4_d0", Op::Crop(6, 5)),
        ("crop_d9_d2", Op::Crop(3, 4)),
    ]
}

fn fixtures() -> &'static HashMap<String, Tensor> {
    static FIX: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    FIX.get_or_init(|| common::load_fixture("upsample.safetensors"))
}

fn try_fixture(name: &str, dev: &Device) -> Option<Tensor> {
    fixtures().get(name).map(|t| t.to_device(dev).unwrap())
}

fn fixture(name: &str, dev: &Device) -> Tensor {
    try_fixture(name, dev).unwrap_or_else(|| panic!("fixture has no `{name}`"))
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.to_device(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// `max|got - want| / max(1, max|want|)`, after checking the shapes agree.
fn rel_diff(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (g, w) = (to_vec(got), to_vec(want));
    let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
    let d = g
        .iter()
        .zip(&w)
        .map(|(a, b)| {
            assert!(a.is_finite(), "{what}: non-finite value {a}");
            (a - b).abs()
        })
        .fold(0.0, f32::max);
    d / scale
}

const TOL: f32 = 1e-4;

#[test]
fn fixture_holds_exactly_the_cases() {
    let mut in_file: Vec<String> = fixtures()
        .keys()
        .filter_map(|k| k.strip_suffix(".input").map(str::to_string))
        .collect();
    in_file.sort();
    let mut here: Vec<String> = cases().iter().map(|(n, _)| n.to_string()).collect();
    here.sort();
    assert_eq!(in_file, here);
}

/// Forward on plain tensors, then forward + backward with the input, weight
/// and bias as `Var`s; every output and gradient against PyTorch.
#[test]
fn forward_and_gradients_match_pytorch() {
    for dev in common::devices() {
        let mut failures = vec![];
        let mut checked = 0;
        let mut worst = (0f32, String::new());
        for (name, op) in cases() {
            let f = |k: &str| fixture(&format!("{name}.{k}"), &dev);
            let x = f("input");
            let w = try_fixture(&format!("{name}.weight"), &dev);
            let b = try_fixture(&format!("{name}.bias"), &dev);
            let want = f("output");
            let got = op
                .run(&x, w.as_ref(), b.as_ref())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut diffs = vec![("output", rel_diff(name, &got, &want))];

            let xv = Var::from_tensor(&x).unwrap();
            let wv = w.as_ref().map(|t| Var::from_tensor(t).unwrap());
            let bv = b.as_ref().map(|t| Var::from_tensor(t).unwrap());
            let y = op
                .run(
                    xv.as_tensor(),
                    wv.as_ref().map(Var::as_tensor),
                    bv.as_ref().map(Var::as_tensor),
                )
                .unwrap();
            diffs.push(("tracked output", rel_diff(name, &y, &want)));
            let grads = (y * f("gout"))
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let mut pairs = vec![("grad_input", &xv)];
            if let Some(v) = &wv {
                pairs.push(("grad_weight", v));
            }
            if let Some(v) = &bv {
                pairs.push(("grad_bias", v));
            }
            for (key, v) in pairs {
                let g = grads
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no {key}"));
                diffs.push((key, rel_diff(name, g, &f(key))));
            }
            for (what, d) in diffs {
                checked += 1;
                if d > worst.0 {
                    worst = (d, format!("{name} {what}"));
                }
                if d > TOL {
                    failures.push(format!("{name} {what}: {d:e}"));
                }
            }
        }
        eprintln!(
            "{dev:?}: {checked} comparisons, worst {:e} ({})",
            worst.0, worst.1
        );
        assert!(failures.is_empty(), "{dev:?}: {failures:#?}");
        assert!(checked > 100, "only {checked} comparisons");
    }
}

/// f64 inputs go through the same ops (the interpolation weights are built
/// in f32, as PyTorch does for f32 inputs).
#[test]
fn f64_inputs() {
    let dev = Device::Cpu;
    for (name, op) in cases() {
        if matches!(op, Op::ConvT(_)) {
            continue;
        }
        let x = fixture(&format!("{name}.input"), &dev);
        let want = fixture(&format!("{name}.output"), &dev);
        let got = op
            .run(&x.to_dtype(DType::F64).unwrap(), None, None)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert!(rel_diff(name, &got, &want) <= TOL, "{name}");
    }
}

/// A non-contiguous input (a transposed view) gives the same result as its
/// contiguous copy.
#[test]
fn strided_input() {
    let dev = Device::Cpu;
    let x = fixture("bil_down.input", &dev); // [1, 2, 9, 11]
    let xt = x.transpose(2, 3).unwrap(); // [1, 2, 11, 9]
    let xc = xt.contiguous().unwrap();
    let w = Tensor::randn(0f32, 1.0, (2, 3, 2, 3), &dev).unwrap();
    let spec = ConvTranspose2dSpec {
        stride: (2, 1),
        padding: (1, 0),
        output_padding: (1, 0),
        dilation: (1, 2),
        groups: 1,
    };
    for op in [
        Op::Nearest(5, 13),
        Op::Bilinear(13, 4, false),
        Op::Bilinear(6, 17, true),
        Op::Crop(8, 6),
        Op::ConvT(spec),
    ] {
        let a = op.run(&xt, Some(&w), None).unwrap();
        let b = op.run(&xc, Some(&w), None).unwrap();
        assert_eq!(rel_diff("strided", &a, &b), 0.0, "{op:?}");
    }
    // pixel shuffle on a transposed [1, 4, 3, 2] view.
    let y = Tensor::arange(0f32, 24.0, &dev)
        .unwrap()
        .reshape((1, 4, 2, 3))
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    let a = pixel_shuffle(&y, 2).unwrap();
    let b = pixel_shuffle(&y.contiguous().unwrap(), 2).unwrap();
    assert_eq!(rel_diff("strided shuffle", &a, &b), 0.0);
}

#[test]
fn shuffle_round_trips_and_places_by_hand() {
    let dev = Device::Cpu;
    // [1, 4, 1, 1] with r = 2 -> [1, 1, 2, 2] laid out row-major by channel.
    let x = Tensor::new(&[0f32, 1.0, 2.0, 3.0], &dev)
        .unwrap()
        .reshape((1, 4, 1, 1))
        .unwrap();
    let y = pixel_shuffle(&x, 2).unwrap();
    assert_eq!(y.dims(), [1, 1, 2, 2]);
    assert_eq!(to_vec(&y), [0.0, 1.0, 2.0, 3.0]);
    let z = Tensor::randn(0f32, 1.0, (2, 18, 3, 4), &dev).unwrap();
    let back = pixel_unshuffle(&pixel_shuffle(&z, 3).unwrap(), 3).unwrap();
    assert_eq!(rel_diff("round trip", &back, &z), 0.0);
}

#[test]
fn crop_offsets_follow_torchvision() {
    // int(round(d / 2.0)) in Python, halves to even.
    let want = [0, 0, 1, 2, 2, 2, 3, 4, 4, 4, 5, 6];
    for (d, w) in want.iter().enumerate() {
        assert_eq!(center_crop_offset(d), *w, "difference {d}");
    }
    // U-Net: 64 -> 56 (even), 136 -> 104.
    assert_eq!(center_crop_offset(8), 4);
    assert_eq!(center_crop_offset(32), 16);
    let x = Tensor::arange(0f32, 5.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 5))
        .unwrap();
    // W 5 -> 2: difference 3, offset 2 -> [2, 3].
    assert_eq!(to_vec(&center_crop(&x, 1, 2).unwrap()), [2.0, 3.0]);
    // W 5 -> 4: difference 1, offset 0 -> [0, 1, 2, 3].
    assert_eq!(
        to_vec(&center_crop(&x, 1, 4).unwrap()),
        [0.0, 1.0, 2.0, 3.0]
    );
}

#[test]
fn output_sizes_by_hand() {
    let s = |st, p, op, d| ConvTranspose2dSpec {
        stride: st,
        padding: p,
        output_padding: op,
        dilation: d,
        groups: 1,
    };
    // (in - 1) * s - 2p + d (k - 1) + op + 1
    // H: (5 - 1) * 2 - 2 + 2 * 1 + 1 + 1 = 10; W: (7 - 1) * 2 - 2 + 2 * 2 + 1 + 1 = 16.
    assert_eq!(
        s((2, 2), (1, 1), (1, 1), (2, 2)).out_size(5, 7, 2, 3),
        Some((10, 16))
    );
    // U-Net up-convolution: 2x2, stride 2 doubles.
    assert_eq!(
        s((2, 2), (0, 0), (0, 0), (1, 1)).out_size(28, 28, 2, 2),
        Some((56, 56))
    );
    // 1x1, padding 1: (1 - 1) * 1 - 2 + 0 + 0 + 1 = -1 -> none.
    assert_eq!(s((1, 1), (1, 1), (0, 0), (1, 1)).out_size(1, 1, 1, 1), None);
    assert_eq!(s((0, 1), (0, 0), (0, 0), (1, 1)).out_size(4, 4, 3, 3), None);
}

#[test]
fn bad_shapes_are_errors() {
    let dev = Device::Cpu;
    let z = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &dev).unwrap();
    let x = z(&[1, 4, 5, 5]);
    let w = z(&[4, 3, 2, 3]);
    let ok = ConvTranspose2dSpec {
        stride: (2, 2),
        padding: (1, 1),
        output_padding: (1, 1),
        dilation: (2, 2),
        groups: 2,
    };
    assert_eq!(
        conv_transpose2d(&x, &w, Some(&z(&[6])), &ok)
            .unwrap()
            .dims(),
        [1, 6, 10, 12]
    );
    let bad_specs = [
        (
            "zero stride",
            ConvTranspose2dSpec {
                stride: (0, 1),
                ..ok
            },
        ),
        (
            "zero dilation",
            ConvTranspose2dSpec {
                dilation: (1, 0),
                ..ok
            },
        ),
        ("zero groups", ConvTranspose2dSpec { groups: 0, ..ok }),
        (
            "groups 3 do not divide 4",
            ConvTranspose2dSpec { groups: 3, ..ok },
        ),
        (
            "output_padding >= stride and dilation",
            ConvTranspose2dSpec {
                output_padding: (2, 1),
                ..ok
            },
        ),
        (
            "padding leaves no output",
            ConvTranspose2dSpec {
                padding: (20, 0),
                ..ok
            },
        ),
    ];
    for (what, spec) in bad_specs {
        assert!(conv_transpose2d(&x, &w, None, &spec).is_err(), "{what}");
    }
    assert!(
        conv_transpose2d(&x, &z(&[3, 3, 2, 3]), None, &ok).is_err(),
        "Cin"
    );
    assert!(
        conv_transpose2d(&x, &z(&[4, 3, 2]), None, &ok).is_err(),
        "3-D w"
    );
    assert!(
        conv_transpose2d(&z(&[4, 5, 5]), &w, None, &ok).is_err(),
        "3-D x"
    );
    assert!(
        conv_transpose2d(&x, &w, Some(&z(&[3])), &ok).is_err(),
        "bias"
    );
    let w64 = w.to_dtype(DType::F64).unwrap();
    assert!(conv_transpose2d(&x, &w64, None, &ok).is_err(), "dtype");

    assert!(upsample_nearest2d(&z(&[4, 5, 5]), (2, 2)).is_err());
    assert!(upsample_nearest2d(&x, (0, 2)).is_err());
    assert!(upsample_nearest2d(&z(&[1, 1, 0, 3]), (2, 2)).is_err());
    assert!(upsample_bilinear2d(&x, (2, 0), true).is_err());
    assert!(upsample_bilinear2d(&z(&[5, 5]), (2, 2), false).is_err());
    let xi = Tensor::zeros((1, 1, 2, 2), DType::U32, &dev).unwrap();
    assert!(upsample_bilinear2d(&xi, (3, 3), false).is_err());

    assert!(pixel_shuffle(&z(&[1, 6, 2, 2]), 2).is_err());
    assert!(pixel_shuffle(&x, 0).is_err());
    assert!(pixel_shuffle(&z(&[4, 2, 2]), 2).is_err());
    assert!(pixel_unshuffle(&z(&[1, 1, 4, 5]), 2).is_err());
    assert!(pixel_unshuffle(&x, 0).is_err());

    assert!(center_crop(&x, 6, 5).is_err(), "larger than the input");
    assert!(center_crop(&x, 0, 5).is_err(), "empty crop");
    assert!(center_crop(&z(&[5]), 1, 1).is_err(), "rank 1");
    assert_eq!(center_crop(&x, 5, 5).unwrap().dims(), [1, 4, 5, 5]);
}
