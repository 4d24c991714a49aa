//! Parity with PyTorch of `netdsl_runtime`'s pooling: `max_pool2d`,
//! `avg_pool2d`, `adaptive_avg_pool2d`, `adaptive_max_pool2d`.
//!
//! The fixture `tests/fixtures/pool.safetensors` (repo root) comes from
//! `scripts/gen_pool_fixtures.py`: for each case `<case>.input`,
//! `<case>.output` (the torch functional's result), `<case>.gout` (a random
//! upstream gradient) and `<case>.grad` (`d sum(output * gout) / d input`).
//! `CASES` below mirrors the script's `CASES` one to one.
//!
//! Every case runs twice: on a plain tensor (which may take the fast path
//! through candle's own pooling) and on a `Var` (always the composed path),
//! whose gradient is compared with PyTorch's too.

use std::collections::HashMap;
use std::sync::OnceLock;

use netdsl_runtime::candle::{DType, Device, Tensor, Var};
use netdsl_runtime::{
    adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d, Pool2d, Result,
};

mod common;

const TOL: f32 = 1e-5;

#[derive(Clone, Copy, Debug)]
enum Op {
    Max(Pool2d),
    Avg(Pool2d),
    AdaptiveAvg(usize, usize),
    AdaptiveMax(usize, usize),
}

impl Op {
    fn run(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Op::Max(p) => max_pool2d(x, p),
            Op::Avg(p) => avg_pool2d(x, p),
            Op::AdaptiveAvg(h, w) => adaptive_avg_pool2d(x, (*h, *w)),
            Op::AdaptiveMax(h, w) => adaptive_max_pool2d(x, (*h, *w)),
        }
    }
}

fn pool(
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    d: (usize, usize),
    ceil: bool,
    incl: bool,
) -> Pool2d {
    Pool2d {
        kernel: k,
        stride: s,
        padding: p,
        dilation: d,
        ceil_mode: ceil,
        count_include_pad: incl,
    }
}

/// `F.max_pool2d(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode)`.
fn mx(
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    d: (usize, usize),
    ceil: bool,
) -> Op {
    Op::Max(pool(k, s, p, d, ceil, true))
}

/// `F.avg_pool2d(kernel_size=k, stride=s, padding=p, ceil_mode, count_include_pad)`.
fn av(k: (usize, usize), s: (usize, usize), p: (usize, usize), ceil: bool, incl: bool) -> Op {
    Op::Avg(pool(k, s, p, (1, 1), ceil, incl))
}

const N: bool = false;
const Y: bool = true;

/// Mirrors `CASES` in scripts/gen_pool_fixtures.py. Inputs are
/// `[2, 2, 9, 11]` unless the name says otherwise (`ceil_corner`, `5to6`,
/// `neg_k2`/`neg_nondiv`/`avg_neg`: `[1, 2, 5, 5]`; `tiny`: `[1, 2, 2, 2]`;
/// `6to7`: `[1, 2, 6, 6]`; `13to6`: `[1, 2, 13, 13]`).
fn cases() -> Vec<(&'static str, Op)> {
    vec![
        // ---- max ----
        ("max_k2_s2", mx((2, 2), (2, 2), (0, 0), (1, 1), N)),
        ("max_k3_s2_p1", mx((3, 3), (2, 2), (1, 1), (1, 1), N)),
        ("max_k3_s2_p1_ceil", mx((3, 3), (2, 2), (1, 1), (1, 1), Y)),
        ("max_k2_s2_ceil", mx((2, 2), (2, 2), (0, 0), (1, 1), Y)),
        ("max_k23_s21_p11", mx((2, 3), (2, 1), (1, 1), (1, 1), N)),
        (
            "max_k23_s12_p01_ceil",
            mx((2, 3), (1, 2), (0, 1), (1, 1), Y),
        ),
        ("max_k3_s1_p1_d2", mx((3, 3), (1, 1), (1, 1), (2, 2), N)),
        (
            "max_k3_s2_p1_d23_ceil",
            mx((3, 3), (2, 2), (1, 1), (2, 3), Y),
        ),
        // H = W = 5, k 2, s 2, p 1, ceil: the 4th window would start at
        // 3 * 2 - 1 = 5 = H, entirely in the right padding, so it is dropped.
        ("max_ceil_corner", mx((2, 2), (2, 2), (1, 1), (1, 1), Y)),
        // 2x2 input, kernel 3 > input: only ceil mode gives (one) output.
        ("max_k3_s2_ceil_tiny", mx((3, 3), (2, 2), (0, 0), (1, 1), Y)),
        (
            "max_neg_k3_s2_p1_ceil",
            mx((3, 3), (2, 2), (1, 1), (1, 1), Y),
        ),
        ("max_neg_k2_s2_p1_d2", mx((2, 2), (2, 2), (1, 1), (2, 2), N)),
        // ---- avg ----
        ("avg_k3_s2", av((3, 3), (2, 2), (0, 0), N, Y)),
        ("avg_k3_s2_p1", av((3, 3), (2, 2), (1, 1), N, Y)),
        ("avg_k3_s2_p1_excl", av((3, 3), (2, 2), (1, 1), N, N)),
        ("avg_k3_s2_p1_ceil", av((3, 3), (2, 2), (1, 1), Y, Y)),
        ("avg_k3_s2_p1_ceil_excl", av((3, 3), (2, 2), (1, 1), Y, N)),
        ("avg_k2_s2_ceil", av((2, 2), (2, 2), (0, 0), Y, Y)),
        ("avg_k23_s21_p11", av((2, 3), (2, 1), (1, 1), N, Y)),
        ("avg_k23_s21_p11_excl", av((2, 3), (2, 1), (1, 1), N, N)),
        ("avg_ceil_corner", av((2, 2), (2, 2), (1, 1), Y, Y)),
        ("avg_ceil_corner_excl", av((2, 2), (2, 2), (1, 1), Y, N)),
        ("avg_neg_k3_s2_p1", av((3, 3), (2, 2), (1, 1), N, Y)),
        // ---- adaptive ----
        ("aavg_smaller_div", Op::AdaptiveAvg(3, 1)),
        ("aavg_global", Op::AdaptiveAvg(1, 1)),
        ("aavg_equal", Op::AdaptiveAvg(9, 11)),
        ("aavg_nondiv", Op::AdaptiveAvg(4, 5)),
        ("aavg_mixed", Op::AdaptiveAvg(12, 4)),
        ("aavg_5to6", Op::AdaptiveAvg(6, 6)),
        ("aavg_6to7", Op::AdaptiveAvg(7, 7)),
        ("aavg_13to6", Op::AdaptiveAvg(6, 6)),
        ("amax_smaller_div", Op::AdaptiveMax(3, 1)),
        ("amax_equal", Op::AdaptiveMax(9, 11)),
        ("amax_nondiv", Op::AdaptiveMax(4, 5)),
        ("amax_mixed", Op::AdaptiveMax(12, 4)),
        ("amax_5to6", Op::AdaptiveMax(6, 6)),
        ("amax_6to7", Op::AdaptiveMax(7, 7)),
        ("amax_13to6", Op::AdaptiveMax(6, 6)),
        ("amax_neg_nondiv", Op::AdaptiveMax(3, 2)),
    ]
}

fn fixtures() -> &'static HashMap<String, Tensor> {
    static F: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    F.get_or_init(|| common::load_fixture("pool.safetensors"))
}

fn fixture(name: &str, dev: &Device) -> Tensor {
    common::on(fixtures(), name, dev)
}

/// The largest absolute difference, after checking the shapes agree.
fn max_diff(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = want
        .to_device(got.device())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    g.iter()
        .zip(&w)
        .map(|(a, b)| {
            assert!(a.is_finite(), "{what}: non-finite value {a}");
            (a - b).abs()
        })
        .fold(0.0, f32::max)
}

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
    assert_eq!(fixtures().len(), 4 * here.len());
}

#[test]
fn forward_matches_pytorch() {
    for dev in common::devices() {
        let mut failures = vec![];
        for (name, op) in cases() {
            let x = fixture(&format!("{name}.input"), &dev);
            let want = fixture(&format!("{name}.output"), &dev);
            // Plain tensor: the fast path where it applies.
            let got = op.run(&x).unwrap_or_else(|e| panic!("{name}: {e}"));
            let d = max_diff(name, &got, &want);
            // A Var: always the composed path.
            let v = Var::from_tensor(&x).unwrap();
            let got_v = op
                .run(v.as_tensor())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let dv = max_diff(name, &got_v, &want);
            if d > TOL || dv > TOL {
                failures.push(format!("{name}: plain {d:e}, tracked {dv:e}"));
            }
        }
        assert!(failures.is_empty(), "{dev:?}: {failures:#?}");
    }
}

/// The composed path is differentiable; with random inputs (no ties inside
/// a window) its gradient equals PyTorch's.
#[test]
fn gradient_matches_pytorch() {
    for dev in common::devices() {
        let mut failures = vec![];
        for (name, op) in cases() {
            let v = Var::from_tensor(&fixture(&format!("{name}.input"), &dev)).unwrap();
            let gout = fixture(&format!("{name}.gout"), &dev);
            let want = fixture(&format!("{name}.grad"), &dev);
            let y = op.run(v.as_tensor()).unwrap();
            let loss = (y * gout).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let got = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let d = max_diff(name, got, &want);
            if d > TOL {
                failures.push(format!("{name}: {d:e}"));
            }
        }
        assert!(failures.is_empty(), "{dev:?}: {failures:#?}");
    }
}

fn p(k: usize, s: usize, pad: usize, d: usize, ceil: bool) -> Pool2d {
    pool((k, k), (s, s), (pad, pad), (d, d), ceil, true)
}

#[test]
fn out_size_by_hand() {
    // out = floor((in + 2p - d(k-1) - 1 [+ s-1 if ceil]) / s) + 1,
    // then with ceil: drop the last window if (out-1)*s >= in + p.

    // 28, k2 s2: (28 - 1 - 1) / 2 + 1 = 13 + 1 = 14.
    assert_eq!(p(2, 2, 0, 1, false).out_size(28, 28), Some((14, 14)));
    // 9, k3 s2 p1: (9 + 2 - 2 - 1) / 2 + 1 = 4 + 1 = 5; ceil: (8 + 1) / 2 + 1 = 5.
    assert_eq!(p(3, 2, 1, 1, false).out_size(9, 9), Some((5, 5)));
    assert_eq!(p(3, 2, 1, 1, true).out_size(9, 9), Some((5, 5)));
    // 11, k3 s2 p1: floor (11 + 2 - 3) / 2 + 1 = 6; ceil (10 + 1) / 2 + 1 = 6.
    // 10, k3 s2 p1: floor (10 + 2 - 3) / 2 + 1 = 4 + 1 = 5; ceil (9 + 1) / 2 + 1 = 6,
    // last start (6-1)*2 = 10 < 10 + 1: kept.
    assert_eq!(p(3, 2, 1, 1, false).out_size(11, 10), Some((6, 5)));
    assert_eq!(p(3, 2, 1, 1, true).out_size(11, 10), Some((6, 6)));
    // 5, k2 s2 p1 ceil: (5 + 2 - 2 + 1) / 2 + 1 = 3 + 1 = 4, but (4-1)*2 = 6 >= 5 + 1:
    // that window starts in the right padding -> 3. Floor: (5 + 2 - 2) / 2 + 1 = 3.
    assert_eq!(p(2, 2, 1, 1, true).out_size(5, 5), Some((3, 3)));
    assert_eq!(p(2, 2, 1, 1, false).out_size(5, 5), Some((3, 3)));
    // 9, k2 s2: floor (9 - 2) / 2 + 1 = 4; ceil (9 - 2 + 1) / 2 + 1 = 5, (5-1)*2 = 8 < 9.
    assert_eq!(p(2, 2, 0, 1, false).out_size(9, 9), Some((4, 4)));
    assert_eq!(p(2, 2, 0, 1, true).out_size(9, 9), Some((5, 5)));
    // Dilation 2, k3 p1 s1 on 9: eff 5, (9 + 2 - 5) / 1 + 1 = 7.
    assert_eq!(p(3, 1, 1, 2, false).out_size(9, 9), Some((7, 7)));
    // 2, k3 s2: floor (2 - 3) / 2 = floor(-0.5) = -1, + 1 = 0 -> None;
    // ceil (2 - 3 + 1) / 2 + 1 = 1, (1-1)*2 = 0 < 2: one window.
    assert_eq!(p(3, 2, 0, 1, false).out_size(2, 2), None);
    assert_eq!(p(3, 2, 0, 1, true).out_size(2, 2), Some((1, 1)));
    // Per axis: H 9, k2 s2 p1 -> (9 + 2 - 2) / 2 + 1 = 5; W 11, k3 s1 p1 -> (11 + 2 - 3) + 1 = 11.
    let q = pool((2, 3), (2, 1), (1, 1), (1, 1), false, true);
    assert_eq!(q.out_size(9, 11), Some((5, 11)));
    // 1, k3 s1 d2: eff 5 > 1 -> (1 - 5) + 1 = -3 -> None.
    assert_eq!(p(3, 1, 0, 2, false).out_size(1, 1), None);
    // Zero kernel / stride / dilation: no output.
    assert_eq!(p(0, 1, 0, 1, false).out_size(4, 4), None);
    assert_eq!(p(2, 0, 0, 1, false).out_size(4, 4), None);
    assert_eq!(p(2, 1, 0, 0, false).out_size(4, 4), None);
}

#[test]
fn pooled_shapes() {
    let x = Tensor::zeros(
        (1, 1, 5, 5),
        netdsl_runtime::candle::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    // AlexNet's adaptive 5x5 -> 6x6 and the corner case above.
    assert_eq!(
        adaptive_avg_pool2d(&x, (6, 6)).unwrap().dims(),
        [1, 1, 6, 6]
    );
    assert_eq!(
        adaptive_max_pool2d(&x, (1, 1)).unwrap().dims(),
        [1, 1, 1, 1]
    );
    assert_eq!(
        max_pool2d(&x, &p(2, 2, 1, 1, true)).unwrap().dims(),
        [1, 1, 3, 3]
    );
    assert_eq!(
        avg_pool2d(&x, &p(2, 2, 1, 1, true)).unwrap().dims(),
        [1, 1, 3, 3]
    );
}

#[test]
fn invalid_configs_are_errors() {
    let dev = Device::Cpu;
    let x = Tensor::ones((1, 2, 5, 5), netdsl_runtime::candle::DType::F32, &dev).unwrap();
    let bad = [
        ("zero kernel", p(0, 1, 0, 1, false)),
        ("zero stride", p(2, 0, 0, 1, false)),
        ("zero dilation", p(2, 1, 0, 0, false)),
        ("padding 2 > kernel 2 / 2", p(2, 2, 2, 1, false)),
        ("padding 2 > kernel 3 / 2", p(3, 1, 2, 1, false)),
        ("kernel 7 > input 5", p(7, 1, 0, 1, false)),
        ("dilated kernel 9 > input 5 + 2", p(3, 1, 1, 4, false)),
        (
            "padding (0, 2) > kernel (3, 3) / 2 on w",
            pool((3, 3), (1, 1), (0, 2), (1, 1), false, true),
        ),
        (
            "zero stride on w only",
            pool((3, 3), (1, 0), (0, 0), (1, 1), false, true),
        ),
    ];
    for (what, cfg) in bad {
        assert!(max_pool2d(&x, &cfg).is_err(), "max_pool2d: {what}");
        assert!(avg_pool2d(&x, &cfg).is_err(), "avg_pool2d: {what}");
    }
    // Avg pooling has no dilation.
    assert!(avg_pool2d(&x, &p(3, 1, 1, 2, false)).is_err());
    assert!(max_pool2d(&x, &p(3, 1, 1, 2, false)).is_ok());
    // Adaptive: zero output or empty input.
    assert!(adaptive_avg_pool2d(&x, (0, 3)).is_err());
    assert!(adaptive_max_pool2d(&x, (3, 0)).is_err());
    let empty = Tensor::zeros((1, 2, 0, 5), netdsl_runtime::candle::DType::F32, &dev).unwrap();
    assert!(adaptive_avg_pool2d(&empty, (2, 2)).is_err());
    assert!(adaptive_max_pool2d(&empty, (2, 2)).is_err());
    // Not NCHW.
    let x3 = Tensor::ones((2, 5, 5), netdsl_runtime::candle::DType::F32, &dev).unwrap();
    assert!(max_pool2d(&x3, &p(2, 2, 0, 1, false)).is_err());
    assert!(avg_pool2d(&x3, &p(2, 2, 0, 1, false)).is_err());
    assert!(adaptive_avg_pool2d(&x3, (2, 2)).is_err());
    assert!(adaptive_max_pool2d(&x3, (2, 2)).is_err());
}

/// A non-contiguous input (a transposed view) is pooled like its copy.
#[test]
fn strided_input() {
    let x = fixture("max_k3_s2_p1.input", &Device::Cpu);
    let xt = x.transpose(2, 3).unwrap();
    let xc = xt.contiguous().unwrap();
    for op in [
        mx((3, 3), (2, 2), (1, 1), (1, 1), Y),
        mx((2, 2), (2, 2), (0, 0), (1, 1), N),
        av((2, 3), (2, 1), (1, 1), N, N),
        Op::AdaptiveAvg(4, 5),
        Op::AdaptiveMax(3, 1),
    ] {
        let a = op.run(&xt).unwrap();
        let b = op.run(&xc).unwrap();
        assert_eq!(max_diff("strided", &a, &b), 0.0, "{op:?}");
    }
}

/// Ties and NaN, where the gradient's route is a choice: on the CPU it is
/// PyTorch's (its `max_pool2d` kernel keeps the first maximum of a window in
/// row-major order, and the last NaN). Overlapping windows add up.
#[test]
fn max_pool_gradient_takes_pytorchs_pick() {
    let dev = Device::Cpu;
    let nan = f32::NAN;
    // 2x2 windows, stride 2, over equal values: the top-left of each.
    let v = Var::from_tensor(&Tensor::ones((1, 1, 4, 4), DType::F32, &dev).unwrap()).unwrap();
    let p2 = p(2, 2, 0, 1, false);
    // The input gradient of the pooled sum.
    let grad = |v: &Var, p: &Pool2d| -> Vec<f32> {
        let y = max_pool2d(v.as_tensor(), p).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let g = g.get(v.as_tensor()).unwrap().flatten_all().unwrap();
        g.to_vec1::<f32>().unwrap()
    };
    let got = grad(&v, &p2);
    let want = [
        1., 0., 1., 0., //
        0., 0., 0., 0., //
        1., 0., 1., 0., //
        0., 0., 0., 0.,
    ];
    assert_eq!(got, want);
    // 3x3 windows, stride 1, overlapping over a row of ties and two NaN.
    let x = [
        5., 5., 1., //
        0., 5., 2., //
        nan, 3., nan,
    ];
    let v = Var::from_tensor(&Tensor::from_vec(x.to_vec(), (1, 1, 3, 3), &dev).unwrap()).unwrap();
    let p3 = p(3, 1, 1, 1, false);
    let got = grad(&v, &p3);
    // Row 0's windows see rows 0-1 only: 5 at (0, 0) first for outputs
    // (0, 0) and (0, 1), (0, 1) first for (0, 2); rows 1 and 2 see a NaN:
    // the last one in each window ((2, 0) for column 0, (2, 2) for 1 and 2).
    let want = [
        2., 1., 0., //
        0., 0., 0., //
        2., 0., 4.,
    ];
    assert_eq!(got, want);
}
