//! The runtime's image filters (`filter2d`, `median2d`, `pad2d`) against
//! hand-computed values and against PyTorch and SciPy.
//!
//! The fixture `tests/fixtures/filters.safetensors` (repo root) comes from
//! `scripts/gen_filter_fixtures.py`: for each case `<case>.input`,
//! `<case>.kernel`, `<case>.output` and, for the linear filters,
//! `<case>.gout` / `<case>.grad_input` (`d sum(output * gout) / d input`);
//! rank-one kernels also have their factors `<case>.col` and `<case>.row`.
//! `cases()` below mirrors the script's `CASES` (border and padding).
//!
//! Every lowering of a linear case is checked against the reference, the
//! output within 1e-5 of its scale, and the input gradient too.

use std::collections::HashMap;
use std::sync::OnceLock;

use netdsl_runtime::candle::{Device, Tensor, Var};
use netdsl_runtime::{filter2d, median2d, pad2d, Border, FilterSpec, Lowering, Taps};

mod common;

type Pad = ((usize, usize), (usize, usize));

fn fixture() -> &'static HashMap<String, Tensor> {
    static F: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    F.get_or_init(|| common::load_fixture("filters.safetensors"))
}

fn get(name: &str, what: &str) -> Option<Tensor> {
    fixture().get(&format!("{name}.{what}")).cloned()
}

fn same(k: usize) -> (usize, usize) {
    ((k - 1) / 2, k / 2)
}

/// Mirrors `CASES` in scripts/gen_filter_fixtures.py: name, border,
/// `same` output, median.
fn cases() -> Vec<(&'static str, Border, bool, bool)> {
    use Border::*;
    vec![
        ("mean3_zeros", Zeros, true, false),
        ("mean5_reflect", Reflect, true, false),
        ("gauss_s1_symmetric", Symmetric, true, false),
        ("gauss_s1_symmetric_wide", Symmetric, true, false),
        ("gauss_s2_k7_reflect", Reflect, true, false),
        ("gauss_s07_replicate", Replicate, true, false),
        ("gauss_s1_circular_valid", Circular, false, false),
        ("sobel_x_circular", Circular, true, false),
        ("sobel_y_zeros", Zeros, true, false),
        ("sobel_x_symmetric", Symmetric, true, false),
        ("laplacian_replicate", Replicate, true, false),
        ("laplacian_symmetric", Symmetric, true, false),
        ("shift_2_m1_zeros", Zeros, true, false),
        ("custom_3x5_valid", Zeros, false, false),
        ("custom_rank1_4x2_reflect", Reflect, true, false),
        ("median3_symmetric", Symmetric, true, true),
        ("median5_zeros", Zeros, true, true),
        ("median3_reflect", Reflect, true, true),
        ("median3_circular_valid", Circular, false, true),
    ]
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn scale(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(1.0)
}

fn v1(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn every_lowering_matches_pytorch_and_scipy() {
    let mut checked = 0;
    for (name, border, is_same, median) in cases() {
        let x = get(name, "input").unwrap_or_else(|| panic!("{name}: no input"));
        let want = get(name, "output").unwrap();
        let k = get(name, "kernel").unwrap();
        let (kh, kw) = k.dims2().unwrap();
        let pad: Pad = if is_same {
            (same(kh), same(kw))
        } else {
            ((0, 0), (0, 0))
        };
        if median {
            let got = median2d(&x, (kh, kw), pad, border).unwrap();
            let err = max_abs_diff(&got, &want);
            assert!(err <= 1e-6, "{name}: median differs by {err}");
            checked += 1;
            continue;
        }
        let full = v1(&k);
        let factors = get(name, "col").map(|c| (v1(&c), v1(&get(name, "row").unwrap())));
        let nonzero: Vec<usize> = (0..full.len()).filter(|&i| full[i] != 0.0).collect();
        let mut forms: Vec<(Taps, Lowering)> = vec![
            (Taps::Full(&full), Lowering::Direct),
            (Taps::Full(&full), Lowering::Fft),
        ];
        if let Some((col, row)) = &factors {
            for l in [
                Lowering::Direct,
                Lowering::Separable,
                Lowering::Banded,
                Lowering::Fft,
            ] {
                forms.push((Taps::Outer { col, row }, l));
            }
        }
        if let [i] = nonzero[..] {
            forms.push((
                Taps::Full(&full),
                Lowering::Tap {
                    t: i / kw,
                    s: i % kw,
                },
            ));
        }
        for (taps, lowering) in forms {
            let spec = FilterSpec {
                taps,
                size: (kh, kw),
                pad,
                border,
                lowering,
            };
            let xv = Var::from_tensor(&x).unwrap();
            let got = filter2d(xv.as_tensor(), &spec).unwrap();
            let err = max_abs_diff(&got, &want);
            assert!(
                err <= 1e-5 * scale(&want),
                "{name} {lowering:?}: output differs by {err}"
            );
            if let Some(gout) = get(name, "gout") {
                let grads = (got * &gout)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let g = grads.get(xv.as_tensor()).expect("a gradient for the input");
                let want_g = get(name, "grad_input").unwrap();
                let err = max_abs_diff(g, &want_g);
                assert!(
                    err <= 1e-5 * scale(&want_g),
                    "{name} {lowering:?}: input gradient differs by {err}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 55, "only {checked} checks ran");
}

/// `a b c d` padded by 2 on each side, every rule (the table in the
/// module docs).
#[test]
fn borders_by_hand() {
    let x = Tensor::new(&[1f32, 2., 3., 4.], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 1, 4))
        .unwrap();
    let row = |b| v1(&pad2d(&x, ((0, 0), (2, 2)), b).unwrap());
    assert_eq!(row(Border::Zeros), [0., 0., 1., 2., 3., 4., 0., 0.]);
    assert_eq!(row(Border::Reflect), [3., 2., 1., 2., 3., 4., 3., 2.]);
    assert_eq!(row(Border::Symmetric), [2., 1., 1., 2., 3., 4., 4., 3.]);
    assert_eq!(row(Border::Replicate), [1., 1., 1., 2., 3., 4., 4., 4.]);
    assert_eq!(row(Border::Circular), [3., 4., 1., 2., 3., 4., 1., 2.]);
    // Longer than the input: reflection continues periodically (SciPy).
    let long = |b| v1(&pad2d(&x, ((0, 0), (5, 0)), b).unwrap());
    assert_eq!(long(Border::Reflect), [2., 3., 4., 3., 2., 1., 2., 3., 4.]);
    assert_eq!(
        long(Border::Symmetric),
        [4., 4., 3., 2., 1., 1., 2., 3., 4.]
    );
    assert_eq!(long(Border::Circular), [4., 1., 2., 3., 4., 1., 2., 3., 4.]);
}

fn image(h: usize, w: usize) -> Tensor {
    // x[i, j] = 10 i + j, two channels (the second negated).
    let mut v: Vec<f32> = (0..h * w).map(|p| (10 * (p / w) + p % w) as f32).collect();
    let neg: Vec<f32> = v.iter().map(|a| -a).collect();
    v.extend(neg);
    Tensor::from_vec(v, (1, 2, h, w), &Device::Cpu).unwrap()
}

#[test]
fn mean_3x3_by_hand() {
    // x[i, j] = 10 i + j is linear: the mean of a full window is its
    // centre. At the zero-padded corner (0, 0) the window holds
    // 0 + 1 + 10 + 11 = 22 and five zeros: 22 / 9.
    let x = image(4, 5);
    let k = [1.0f32 / 3.0; 3];
    for lowering in [Lowering::Direct, Lowering::Separable, Lowering::Banded] {
        let spec = FilterSpec {
            taps: Taps::Outer { col: &k, row: &k },
            size: (3, 3),
            pad: ((1, 1), (1, 1)),
            border: Border::Zeros,
            lowering,
        };
        let v = v1(&filter2d(&x, &spec).unwrap());
        assert!((v[0] - 22.0 / 9.0).abs() < 1e-5, "{lowering:?}: {}", v[0]);
        assert!(
            (v[5 + 1] - 11.0).abs() < 1e-5,
            "{lowering:?}: centre (1, 1) is {}",
            v[6]
        );
        assert!(
            (v[20 + 5 + 1] + 11.0).abs() < 1e-5,
            "{lowering:?}: channel 2"
        );
    }
}

#[test]
fn impulse_is_the_identity_and_shift_shifts_exactly() {
    let x = Tensor::randn(0f32, 1.0, (2, 3, 7, 9), &Device::Cpu).unwrap();
    let mut k = [0f32; 9];
    k[4] = 1.0;
    for lowering in [Lowering::Direct, Lowering::Tap { t: 1, s: 1 }] {
        let spec = FilterSpec {
            taps: Taps::Full(&k),
            size: (3, 3),
            pad: ((1, 1), (1, 1)),
            border: Border::Reflect,
            lowering,
        };
        let y = filter2d(&x, &spec).unwrap();
        assert_eq!(v1(&y), v1(&x), "{lowering:?}");
    }
    // Shift(dy = 1, dx = -2): y[i, j] = x[i - 1, j + 2]; kernel 3 x 5 with
    // its tap at (1 - 1, 2 + 2) = (0, 4).
    let mut k = [0f32; 15];
    k[4] = 1.0;
    for lowering in [Lowering::Direct, Lowering::Tap { t: 0, s: 4 }] {
        let spec = FilterSpec {
            taps: Taps::Full(&k),
            size: (3, 5),
            pad: ((1, 1), (2, 2)),
            border: Border::Zeros,
            lowering,
        };
        let y = filter2d(&x, &spec).unwrap();
        let xs = x.narrow(2, 0, 6).unwrap().narrow(3, 2, 7).unwrap();
        let ys = y.narrow(2, 1, 6).unwrap().narrow(3, 0, 7).unwrap();
        assert_eq!(v1(&ys), v1(&xs), "{lowering:?}");
        // The rows and columns shifted in are zeros.
        assert!(v1(&y.narrow(2, 0, 1).unwrap()).iter().all(|v| *v == 0.0));
        assert!(v1(&y.narrow(3, 7, 2).unwrap()).iter().all(|v| *v == 0.0));
    }
}

/// A rank-one kernel of `k` taps (a sampled Gaussian times a ramp, so not
/// symmetric: a flipped kernel would be caught) and its full form.
fn odd_kernel(kh: usize, kw: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let g = |n: usize, s: f32| -> Vec<f32> {
        let c = (n as f32 - 1.0) / 2.0;
        (0..n)
            .map(|i| (-(i as f32 - c).powi(2) / (2.0 * s * s)).exp() * (1.0 + 0.1 * i as f32))
            .collect()
    };
    let (col, row) = (g(kh, kh as f32 / 4.0 + 0.5), g(kw, kw as f32 / 5.0 + 0.5));
    let full = col
        .iter()
        .flat_map(|c| row.iter().map(move |r| c * r))
        .collect();
    (col, row, full)
}

/// The FFT form (and the banded and separable ones) against the direct
/// one on random images of odd sizes, every border, `same` and `valid`,
/// full and rank-one kernels (wider than the image on one side, so
/// reflection continues periodically; and an image large enough for the
/// banded products to run in several blocks), within 1e-5 of the output's
/// scale; the input gradient too.
#[test]
fn fft_agrees_with_direct_on_random_odd_images() {
    use Border::*;
    let dev = Device::Cpu;
    let mut checked = 0;
    for (h, w, kh, kw) in [
        (13, 17, 5, 7),
        (9, 21, 11, 3),
        (7, 5, 9, 9),
        (31, 19, 15, 15),
        (151, 137, 9, 5),
    ] {
        let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap();
        let gout_full = Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap();
        let (col, row, full) = odd_kernel(kh, kw);
        for border in [Zeros, Reflect, Symmetric, Replicate, Circular] {
            for is_same in [true, false] {
                if !is_same && (kh > h || kw > w) {
                    continue;
                }
                let pad: Pad = if is_same {
                    (same(kh), same(kw))
                } else {
                    ((0, 0), (0, 0))
                };
                let spec = |taps, lowering| FilterSpec {
                    taps,
                    size: (kh, kw),
                    pad,
                    border,
                    lowering,
                };
                let run = |spec: FilterSpec| {
                    let xv = Var::from_tensor(&x).unwrap();
                    let y = filter2d(xv.as_tensor(), &spec).unwrap();
                    let (oh, ow) = (y.dim(2).unwrap(), y.dim(3).unwrap());
                    let gout = gout_full
                        .narrow(2, 0, oh)
                        .unwrap()
                        .narrow(3, 0, ow)
                        .unwrap();
                    let grads = (&y * &gout).unwrap().sum_all().unwrap().backward().unwrap();
                    let g = grads.get(xv.as_tensor()).unwrap().clone();
                    (y, g)
                };
                let (want, want_g) = run(spec(Taps::Full(&full), Lowering::Direct));
                let outer = Taps::Outer {
                    col: &col,
                    row: &row,
                };
                for (taps, lowering) in [
                    (Taps::Full(&full), Lowering::Fft),
                    (outer, Lowering::Fft),
                    (outer, Lowering::Banded),
                    (outer, Lowering::Separable),
                ] {
                    let (got, g) = run(spec(taps, lowering));
                    let err = max_abs_diff(&got, &want);
                    assert!(
                        err <= 1e-5 * scale(&want),
                        "{h}x{w} k {kh}x{kw} {border:?} same {is_same} {lowering:?}: output differs by {err}"
                    );
                    let err = max_abs_diff(&g, &want_g);
                    assert!(
                        err <= 1e-5 * scale(&want_g),
                        "{h}x{w} k {kh}x{kw} {border:?} same {is_same} {lowering:?}: gradient differs by {err}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 160, "checks run");
}

/// The FFT form keeps the input's dtype (it computes in f32).
#[test]
fn fft_in_f64() {
    let x = Tensor::randn(0f64, 1.0, (1, 2, 11, 9), &Device::Cpu).unwrap();
    let (col, row, full) = odd_kernel(5, 3);
    let spec = |lowering| FilterSpec {
        taps: Taps::Outer {
            col: &col,
            row: &row,
        },
        size: (5, 3),
        pad: ((2, 2), (1, 1)),
        border: Border::Reflect,
        lowering,
    };
    let (a, b) = (
        filter2d(&x, &spec(Lowering::Fft)).unwrap(),
        filter2d(&x, &spec(Lowering::Direct)).unwrap(),
    );
    assert_eq!(a.dtype(), netdsl_runtime::candle::DType::F64);
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert!(d.to_scalar::<f64>().unwrap() < 1e-5);
    let _ = full;
}

#[test]
fn median_by_hand() {
    // One channel, 3 x 3, with an outlier: the median removes it.
    let x = Tensor::new(&[1f32, 2., 3., 4., 100., 6., 7., 8., 9.], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 3, 3))
        .unwrap();
    let y = median2d(&x, (3, 3), ((0, 0), (0, 0)), Border::Zeros).unwrap();
    // Sorted: 1 2 3 4 6 7 8 9 100; the fifth of nine is 6.
    assert_eq!(v1(&y), [6.0]);
    // Zero border, `same`: the corner (0, 0) sees 1 2 4 100 and five
    // zeros, so 0; with `replicate` it sees 1 1 2 1 1 2 4 4 100, so 2.
    let y = median2d(&x, (3, 3), ((1, 1), (1, 1)), Border::Zeros).unwrap();
    assert_eq!(v1(&y)[0], 0.0);
    let y = median2d(&x, (3, 3), ((1, 1), (1, 1)), Border::Replicate).unwrap();
    assert_eq!(v1(&y)[0], 2.0);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let k = [1f32; 9];
    let spec = FilterSpec {
        taps: Taps::Full(&k),
        size: (3, 3),
        pad: ((0, 0), (0, 0)),
        border: Border::Zeros,
        lowering: Lowering::Direct,
    };
    let small = Tensor::zeros(
        (1, 1, 2, 2),
        netdsl_runtime::candle::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert!(filter2d(&small, &spec).is_err());
    let flat = Tensor::zeros((4, 4), netdsl_runtime::candle::DType::F32, &Device::Cpu).unwrap();
    assert!(filter2d(&flat, &spec).is_err());
    let wrong = FilterSpec {
        taps: Taps::Full(&k[..4]),
        ..spec
    };
    let x = Tensor::zeros(
        (1, 1, 5, 5),
        netdsl_runtime::candle::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert!(filter2d(&x, &wrong).is_err());
    let sep = FilterSpec {
        lowering: Lowering::Separable,
        ..spec
    };
    assert!(filter2d(&x, &sep).is_err());
    assert!(median2d(&small, (3, 3), ((0, 0), (0, 0)), Border::Zeros).is_err());
}
