//! Parity of `netdsl_runtime::conv2d` with PyTorch (forward and the input,
//! weight and bias gradients) and with candle's own `conv2d` (forward).
//!
//! The fixture `tests/fixtures/conv_grad.safetensors` (repo root) comes from
//! `scripts/gen_conv_fixtures.py`: for each case `<case>.spec` (the options),
//! `.x .w .b .y .gy .dx .dw .db`, computed by PyTorch in float64.
//! `CASES` lists the names the script writes.

use std::collections::HashMap;
use std::sync::OnceLock;

use netdsl_runtime::candle::{DType, Device, Tensor, Var};
use netdsl_runtime::conv::threads;
use netdsl_runtime::{
    conv2d, conv2d_prepared, prepare_conv, prepare_conv_with, Conv2dSpec, Epilogue, Result,
    Winograd,
};

mod common;

const CASES: &[&str] = &[
    "odd_3x3",
    "stride2_parity",
    "stride3",
    "stride_per_axis",
    "dilation2",
    "dilation_per_axis",
    "groups2",
    "depthwise",
    "depthwise_mult2_s2",
    "depthwise_dil_asym",
    "pointwise",
    "pointwise_groups",
    "pointwise_stride2",
    "k7_s2",
    "k11_s4",
    "asym_pad",
    "rect_kernel",
    "bias_relu",
    "bias_leaky",
    "bias_leaky_neg",
    "bias_gelu",
    "bias_silu",
    "bias_sigmoid",
    "depthwise_gelu",
    "pointwise_silu",
    "groups2_relu_s2",
    "pad_beyond_reach",
    "bottom_pad_beyond",
    "wide_stride2",
];

fn fixture() -> &'static HashMap<String, Tensor> {
    static F: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    F.get_or_init(|| common::load_fixture("conv_grad.safetensors"))
}

fn get(case: &str, what: &str) -> Tensor {
    fixture()
        .get(&format!("{case}.{what}"))
        .unwrap_or_else(|| panic!("fixture lacks {case}.{what}"))
        .clone()
}

/// `|got - want| <= 1e-4 * max(1, max |want|)` everywhere.
fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let w = want.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let (g, w) = (g.to_vec1::<f32>().unwrap(), w.to_vec1::<f32>().unwrap());
    let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
    let err = g
        .iter()
        .zip(&w)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= 1e-4 * scale,
        "{what}: max error {err} > 1e-4 x {scale}"
    );
}

fn spec_of(case: &str) -> (Conv2dSpec, Epilogue) {
    let s = get(case, "spec").to_vec1::<f32>().unwrap();
    let u = |i: usize| s[i] as usize;
    let spec = Conv2dSpec {
        stride: (u(0), u(1)),
        padding: ((u(2), u(3)), (u(4), u(5))),
        dilation: (u(6), u(7)),
        groups: u(8),
    };
    let act = match u(9) {
        0 => Epilogue::None,
        1 => Epilogue::Relu,
        2 => Epilogue::LeakyRelu(s[10]),
        3 => Epilogue::Gelu,
        4 => Epilogue::Silu,
        5 => Epilogue::Sigmoid,
        a => panic!("unknown activation {a}"),
    };
    (spec, act)
}

/// Forward and gradients of one fixture case in `dtype`, with or without
/// the bias.
fn check_case(case: &str, dtype: DType, with_bias: bool) -> Result<()> {
    let (spec, act) = spec_of(case);
    let x = Var::from_tensor(&get(case, "x").to_dtype(dtype)?)?;
    let w = Var::from_tensor(&get(case, "w").to_dtype(dtype)?)?;
    let b = Var::from_tensor(&get(case, "b").to_dtype(dtype)?)?;
    let tag = format!("{case} ({dtype:?}, bias {with_bias})");
    let y = if with_bias {
        conv2d(&x, &w, Some(&b), &spec, act)?
    } else {
        // only meaningful without an activation: y_ref - b
        conv2d(&x, &w, None, &spec, act)?.broadcast_add(&b.reshape((1, (), 1, 1))?)?
    };
    assert_eq!(y.dtype(), dtype);
    assert_close(&y, &get(case, "y"), &format!("{tag}: y"));
    let gy = get(case, "gy").to_dtype(dtype)?;
    let grads = (y * gy)?.sum_all()?.backward()?;
    for (v, name) in [(&x, "dx"), (&w, "dw"), (&b, "db")] {
        let g = grads.get(v.as_tensor()).expect("a gradient");
        assert_eq!(g.dtype(), dtype);
        assert_close(g, &get(case, name), &format!("{tag}: {name}"));
    }
    Ok(())
}

#[test]
fn fixture_has_every_case() {
    let mut names: Vec<&str> = fixture()
        .keys()
        .filter_map(|k| k.strip_suffix(".spec"))
        .collect();
    names.sort();
    let mut want = CASES.to_vec();
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn pytorch_parity_f32() -> Result<()> {
    for case in CASES {
        check_case(case, DType::F32, true)?;
    }
    Ok(())
}

#[test]
fn pytorch_parity_without_bias() -> Result<()> {
    for case in CASES {
        if spec_of(case).1 == Epilogue::None {
            check_case(case, DType::F32, false)?;
        }
    }
    Ok(())
}

/// f64 takes candle's conv for the forward pass (the path CUDA takes too).
#[test]
fn pytorch_parity_f64_fallback() -> Result<()> {
    for case in CASES {
        check_case(case, DType::F64, true)?;
    }
    Ok(())
}

/// Deterministic pseudo-random values in [-1, 1).
fn rand(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn sym(s: usize, p: usize, d: usize, groups: usize) -> Conv2dSpec {
    Conv2dSpec {
        stride: (s, s),
        padding: ((p, p), (p, p)),
        dilation: (d, d),
        groups,
    }
}

/// Shapes large enough for several tiles and jobs, against candle's conv.
#[test]
fn candle_parity_forward() -> Result<()> {
    // x, w, stride, padding, dilation, groups
    type Case<'a> = (&'a [usize], &'a [usize], usize, usize, usize, usize);
    let cases: &[Case] = &[
        (&[3, 64, 20, 19], &[64, 64, 3, 3], 1, 1, 1, 1),
        (&[1, 32, 33, 31], &[48, 32, 3, 3], 2, 1, 1, 1),
        (&[2, 48, 30, 30], &[32, 48, 1, 1], 1, 0, 1, 1),
        (&[2, 16, 23, 21], &[16, 1, 3, 3], 2, 1, 1, 16),
        (&[1, 8, 30, 29], &[16, 1, 5, 5], 1, 2, 1, 8),
        (&[1, 3, 37, 40], &[8, 3, 7, 7], 2, 3, 1, 1),
        (&[2, 8, 17, 18], &[12, 4, 3, 3], 1, 2, 2, 2),
        (&[1, 4, 41, 43], &[6, 4, 11, 11], 4, 2, 1, 1),
    ];
    for (i, &(xs, ws, s, p, d, g)) in cases.iter().enumerate() {
        let x = rand(xs, 2 * i as u64);
        let w = rand(ws, 2 * i as u64 + 1);
        let b = rand(&[ws[0]], 99);
        let spec = sym(s, p, d, g);
        let want = x.conv2d(&w, p, s, d, g)?;
        assert_close(
            &conv2d(&x, &w, None, &spec, Epilogue::None)?,
            &want,
            &format!("case {i}"),
        );
        let want = want.broadcast_add(&b.reshape((1, (), 1, 1))?)?.relu()?;
        let got = conv2d(&x, &w, Some(&b), &spec, Epilogue::Relu)?;
        assert_close(&got, &want, &format!("case {i} + bias + relu"));
        // a strided (transposed) view of the input gives the same result
        let xt = x.transpose(2, 3)?.contiguous()?.transpose(2, 3)?;
        assert!(!xt.is_contiguous());
        assert_close(
            &conv2d(&xt, &w, Some(&b), &spec, Epilogue::Relu)?,
            &got,
            "strided x",
        );
    }
    Ok(())
}

/// Prepared weights (packed once) on small output planes, where a gathered
/// convolution's patches are gathered once per image and the product is
/// split over the output channels (with AVX-512), and on larger ones cut
/// into tiles: each equals candle's convolution, bias and ReLU, for every
/// image of a batch, with groups, stride 2 and channel counts that are not
/// multiples of the kernel's 8 rows; and a 1x1 convolution over planes of
/// a thousand pixels, whose tiles' input rows are copied into the panel.
#[test]
fn prepared_weights_equal_candle_on_small_planes() -> Result<()> {
    // x, w, stride, padding, groups
    type Case<'a> = (&'a [usize], &'a [usize], usize, usize, usize);
    let cases: &[Case] = &[
        (&[1, 24, 7, 7], &[40, 24, 3, 3], 1, 1, 1),
        (&[3, 20, 7, 7], &[33, 20, 3, 3], 1, 1, 1),
        (&[1, 16, 15, 13], &[24, 16, 3, 3], 2, 1, 1),
        (&[2, 8, 17, 17], &[16, 4, 3, 3], 2, 1, 2),
        (&[1, 12, 14, 14], &[64, 12, 3, 3], 1, 1, 1),
        (&[1, 16, 7, 7], &[16, 16, 1, 1], 2, 0, 1),
        // A 1x1 convolution whose input rows are copied into the panel.
        (&[2, 128, 32, 33], &[24, 128, 1, 1], 1, 0, 1),
    ];
    for (i, &(xs, ws, s, p, g)) in cases.iter().enumerate() {
        let x = rand(xs, 40 + 2 * i as u64);
        let w = rand(ws, 41 + 2 * i as u64);
        let b = rand(&[ws[0]], 7);
        let spec = sym(s, p, 1, g);
        let want = x
            .conv2d(&w, p, s, 1, g)?
            .broadcast_add(&b.reshape((1, (), 1, 1))?)?
            .relu()?;
        let prepared = prepare_conv(w.clone(), Some(b.clone()), false)?;
        // Twice: the first call packs the weight, the second reuses it.
        for call in 0..2 {
            let got = conv2d_prepared(&x, &prepared, &spec, Epilogue::Relu)?;
            assert_close(&got, &want, &format!("case {i}, call {call}"));
        }
    }
    Ok(())
}

/// Each epilogue against candle's ops on a multi-tile shape.
#[test]
fn epilogues_match_candle_ops() -> Result<()> {
    let x = rand(&[2, 16, 21, 22], 7).affine(3.0, 0.0)?;
    let w = rand(&[24, 16, 3, 3], 8);
    let b = rand(&[24], 9);
    let spec = sym(1, 1, 1, 1);
    let z = x
        .conv2d(&w, 1, 1, 1, 1)?
        .broadcast_add(&b.reshape((1, (), 1, 1))?)?;
    let sig = netdsl_runtime::candle_nn::ops::sigmoid(&z)?;
    let cases = [
        (Epilogue::Relu, z.relu()?),
        (
            Epilogue::LeakyRelu(0.2),
            netdsl_runtime::candle_nn::ops::leaky_relu(&z, 0.2)?,
        ),
        (Epilogue::Gelu, z.gelu_erf()?),
        (Epilogue::Silu, (&z * &sig)?),
        (Epilogue::Sigmoid, sig.clone()),
        (Epilogue::Relu6, z.clamp(0f32, 6f32)?),
    ];
    for (act, want) in cases {
        assert_close(
            &conv2d(&x, &w, Some(&b), &spec, act)?,
            &want,
            &format!("{act:?}"),
        );
    }
    Ok(())
}

/// The ReLU6 epilogue's gradients equal those of the convolution followed
/// by a separate clamp (values on both sides of 0 and of 6).
#[test]
fn relu6_epilogue_gradients_match_a_separate_clamp() -> Result<()> {
    let spec = sym(1, 1, 1, 1);
    let grads = |fused: bool| -> Result<Vec<Vec<f32>>> {
        let x = Var::from_tensor(&rand(&[2, 4, 9, 8], 1).affine(4.0, 0.0)?)?;
        let w = Var::from_tensor(&rand(&[5, 4, 3, 3], 2))?;
        let b = Var::from_tensor(&rand(&[5], 3))?;
        let y = if fused {
            conv2d(&x, &w, Some(&b), &spec, Epilogue::Relu6)?
        } else {
            conv2d(&x, &w, Some(&b), &spec, Epilogue::None)?.clamp(0f32, 6f32)?
        };
        let above = y
            .ge(6f32)?
            .to_dtype(netdsl_runtime::candle::DType::F32)?
            .sum_all()?;
        assert!(above.to_scalar::<f32>()? > 0.0, "some outputs reach 6");
        let gy = rand(y.dims(), 4);
        let g = (y * gy)?.sum_all()?.backward()?;
        [x.as_tensor(), w.as_tensor(), b.as_tensor()]
            .iter()
            .map(|v| {
                Ok(g.get(v)
                    .expect("a gradient")
                    .flatten_all()?
                    .to_vec1::<f32>()?)
            })
            .collect()
    };
    let (a, b) = (grads(true)?, grads(false)?);
    for (ga, gb) in a.iter().zip(&b) {
        for (p, q) in ga.iter().zip(gb) {
            assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }
    Ok(())
}

fn grads_in_pool(n: usize, spec: &Conv2dSpec, xs: &[usize], ws: &[usize]) -> Vec<Vec<f32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap();
    pool.install(|| {
        let x = Var::from_tensor(&rand(xs, 1)).unwrap();
        let w = Var::from_tensor(&rand(ws, 2)).unwrap();
        let b = Var::from_tensor(&rand(&[ws[0]], 3)).unwrap();
        let y = conv2d(&x, &w, Some(&b), spec, Epilogue::Silu).unwrap();
        let gy = rand(y.dims(), 4);
        let grads = (y * gy).unwrap().sum_all().unwrap().backward().unwrap();
        [x.as_tensor(), w.as_tensor(), b.as_tensor()]
            .iter()
            .map(|v| {
                grads
                    .get(v)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    })
}

/// Gradients are bit-identical whatever the number of threads.
#[test]
fn gradients_do_not_depend_on_threads() {
    let cases: &[(Conv2dSpec, &[usize], &[usize])] = &[
        (sym(1, 1, 1, 1), &[3, 40, 30, 33], &[40, 40, 3, 3]),
        (sym(2, 1, 1, 2), &[2, 16, 29, 30], &[16, 8, 3, 3]),
        (sym(1, 0, 1, 1), &[2, 64, 40, 40], &[48, 64, 1, 1]),
        (sym(1, 1, 1, 24), &[3, 24, 40, 41], &[24, 1, 3, 3]),
    ];
    for (spec, xs, ws) in cases {
        let one = grads_in_pool(1, spec, xs, ws);
        let three = grads_in_pool(3, spec, xs, ws);
        assert!(
            one == three,
            "{spec:?}: gradients differ between 1 and 3 threads"
        );
    }
}

/// Outside any rayon pool the kernels use `candle::utils::get_num_threads()`,
/// which follows `RAYON_NUM_THREADS`: checked in a child process.
#[test]
fn threads_follow_rayon_num_threads() {
    if let Ok(want) = std::env::var("NETDSL_CONV_EXPECT_THREADS") {
        assert_eq!(threads().to_string(), want);
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["threads_follow_rayon_num_threads", "--exact", "--nocapture"])
        .env("RAYON_NUM_THREADS", "3")
        .env("NETDSL_CONV_EXPECT_THREADS", "3")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

#[test]
fn bad_shapes_are_errors() {
    let x = rand(&[1, 4, 8, 8], 1);
    let spec = Conv2dSpec::default();
    // Cin / groups mismatch
    assert!(conv2d(&x, &rand(&[2, 3, 3, 3], 2), None, &spec, Epilogue::None).is_err());
    // groups do not divide Cin
    let g3 = Conv2dSpec { groups: 3, ..spec };
    assert!(conv2d(&x, &rand(&[3, 1, 3, 3], 2), None, &g3, Epilogue::None).is_err());
    // kernel larger than the input
    assert!(conv2d(&x, &rand(&[2, 4, 9, 9], 2), None, &spec, Epilogue::None).is_err());
    // bias of the wrong length
    let b = rand(&[3], 3);
    assert!(conv2d(&x, &rand(&[2, 4, 3, 3], 2), Some(&b), &spec, Epilogue::None).is_err());
    assert_eq!(spec.out_size(8, 8, 3, 3), Some((6, 6)));
    let s = Conv2dSpec {
        stride: (2, 3),
        padding: ((1, 0), (2, 1)),
        dilation: (1, 2),
        groups: 1,
    };
    assert_eq!(s.out_size(7, 8, 3, 3), Some((3, 3)));
}

/// A 3x3 convolution whose weights track gradients (training) and that
/// has 32 output tiles or more runs Winograd with its weights transformed
/// in the call: its output differs from the direct lowering's by rounding
/// only (it does differ, so the path is taken), and a smaller one is the
/// direct lowering bit for bit.
#[test]
fn training_forward_takes_winograd_where_it_pays() -> Result<()> {
    let spec = sym(1, 1, 1, 1);
    for (xs, ws, winograd) in [
        ([2usize, 8, 40, 39], [12usize, 8, 3, 3], true),
        ([1, 8, 20, 20], [12, 8, 3, 3], false),
        ([2, 4, 40, 39], [12, 4, 3, 3], false),
    ] {
        let x = rand(&xs, 5);
        let w = Var::from_tensor(&rand(&ws, 6))?;
        let tracked = conv2d(&x, w.as_tensor(), None, &spec, Epilogue::Relu)?;
        let direct = conv2d(&x, &w.as_tensor().detach(), None, &spec, Epilogue::Relu)?;
        let err = common::rel_err(&tracked, &direct);
        if winograd {
            assert!(err > 0.0 && err <= 2e-5, "{xs:?}: {err}");
        } else {
            assert_eq!(err, 0.0, "{xs:?}");
        }
    }
    Ok(())
}

/// Depthwise convolutions against candle's at every stride from 1 to 3,
/// asymmetric padding (the input padded by hand for candle), dilation,
/// channel multipliers and widths around the kernel's 16-column blocks
/// and the stride-2 row split's 32 floats (15 to 75 columns), with each
/// epilogue: the padded plane's layout (only the input's places are
/// written, the padding kept from the first plane) and the block stores.
#[test]
fn depthwise_matches_candle_at_every_stride_and_padding() -> Result<()> {
    // (x, kernel, stride, (top, bottom, left, right), dilation, multiplier)
    type Case = (
        [usize; 4],
        usize,
        usize,
        (usize, usize, usize, usize),
        usize,
        usize,
    );
    let cases: &[Case] = &[
        ([1, 5, 9, 15], 3, 1, (1, 1, 1, 1), 1, 1),
        ([2, 3, 12, 33], 3, 2, (1, 1, 1, 1), 1, 1),
        ([1, 4, 11, 64], 3, 2, (0, 1, 0, 1), 1, 2),
        ([1, 3, 10, 75], 5, 2, (2, 2, 2, 2), 1, 1),
        ([1, 2, 13, 40], 3, 3, (1, 0, 2, 1), 1, 1),
        ([1, 3, 9, 31], 3, 1, (2, 1, 0, 2), 2, 1),
        ([1, 2, 14, 47], 3, 2, (3, 3, 3, 3), 1, 3),
        ([1, 2, 8, 17], 7, 2, (3, 3, 3, 3), 1, 1),
        // Stride 1 (AVX-512: read in place, the padding masked off): a
        // 7x7 plane narrower than a block, widths of exactly one block and
        // past two, rows not a multiple of the register block's, a kernel
        // taller than the input with padding wider on one side.
        ([1, 3, 7, 7], 3, 1, (1, 1, 1, 1), 1, 2),
        ([1, 2, 20, 16], 3, 1, (0, 0, 0, 0), 1, 1),
        ([2, 2, 13, 37], 5, 1, (2, 2, 2, 2), 1, 1),
        ([1, 1, 5, 50], 7, 1, (3, 3, 4, 2), 1, 1),
        // 3x3 at stride 1 and 2 (each input row read once per block of
        // output rows): padding on one side only, more rows of padding
        // than a block's first rows read, and blocks cut short.
        ([1, 2, 23, 33], 3, 2, (0, 2, 1, 0), 1, 1),
        ([1, 2, 11, 18], 3, 1, (2, 0, 1, 1), 1, 2),
        ([2, 3, 26, 20], 3, 2, (2, 1, 1, 1), 1, 1),
    ];
    let acts = [Epilogue::None, Epilogue::Relu6, Epilogue::Silu];
    for (i, &(xs, k, s, (pt, pb, pl, pr), d, mult)) in cases.iter().enumerate() {
        let c = xs[1];
        let x = rand(&xs, 40 + i as u64);
        let w = rand(&[c * mult, 1, k, k], 60 + i as u64);
        let b = rand(&[c * mult], 80 + i as u64);
        let spec = Conv2dSpec {
            stride: (s, s),
            padding: ((pt, pb), (pl, pr)),
            dilation: (d, d),
            groups: c,
        };
        let xp = x.pad_with_zeros(2, pt, pb)?.pad_with_zeros(3, pl, pr)?;
        let z = xp
            .conv2d(&w, 0, s, d, c)?
            .broadcast_add(&b.reshape((1, (), 1, 1))?)?;
        for act in acts {
            let want = match act {
                Epilogue::None => z.clone(),
                Epilogue::Relu6 => z.clamp(0f32, 6f32)?,
                _ => (&z * netdsl_runtime::candle_nn::ops::sigmoid(&z)?)?,
            };
            assert_close(
                &conv2d(&x, &w, Some(&b), &spec, act)?,
                &want,
                &format!("depthwise case {i} {act:?}"),
            );
        }
    }
    Ok(())
}

/// Stride-1 convolutions with short output rows take the wide lowering
/// (the product over the padded width, columns past each row dropped):
/// against candle at row lengths around its thresholds, with asymmetric
/// padding, dilation, groups, several images per panel (batch 40), and
/// panels too long for one (many channels), a single input channel, each
/// with three epilogues.
#[test]
fn wide_rows_match_candle() -> Result<()> {
    // (x, w, (top, bottom, left, right), dilation, groups)
    type Case = (
        [usize; 4],
        [usize; 4],
        (usize, usize, usize, usize),
        usize,
        usize,
    );
    let cases: &[Case] = &[
        ([40, 6, 14, 14], [16, 6, 5, 5], (0, 0, 0, 0), 1, 1),
        ([3, 5, 9, 7], [7, 5, 3, 3], (1, 2, 0, 1), 1, 1),
        ([1, 4, 12, 16], [6, 4, 3, 2], (1, 1, 1, 1), 2, 1),
        ([2, 8, 11, 30], [12, 4, 3, 3], (1, 1, 1, 1), 1, 2),
        ([1, 256, 9, 9], [16, 256, 3, 3], (1, 1, 1, 1), 1, 1),
        ([9, 3, 20, 27], [4, 3, 5, 5], (2, 2, 2, 2), 1, 1),
        ([1, 2, 5, 1], [3, 2, 3, 1], (1, 1, 0, 0), 1, 1),
        ([17, 6, 10, 12], [10, 6, 5, 5], (0, 1, 3, 0), 1, 1),
        // one input channel (LeNet-5's first layer), not the depthwise loop
        ([30, 1, 32, 32], [6, 1, 5, 5], (0, 0, 0, 0), 1, 1),
        ([2, 1, 20, 19], [4, 1, 3, 3], (1, 1, 2, 0), 1, 1),
    ];
    let acts = [Epilogue::None, Epilogue::Relu, Epilogue::Silu];
    for (i, &(xs, ws, (pt, pb, pl, pr), d, groups)) in cases.iter().enumerate() {
        let x = rand(&xs, 140 + i as u64);
        let w = rand(&ws, 160 + i as u64);
        let b = rand(&[ws[0]], 180 + i as u64);
        let spec = Conv2dSpec {
            stride: (1, 1),
            padding: ((pt, pb), (pl, pr)),
            dilation: (d, d),
            groups,
        };
        let xp = x.pad_with_zeros(2, pt, pb)?.pad_with_zeros(3, pl, pr)?;
        let z = xp
            .conv2d(&w, 0, 1, d, groups)?
            .broadcast_add(&b.reshape((1, (), 1, 1))?)?;
        for act in acts {
            let want = match act {
                Epilogue::None => z.clone(),
                Epilogue::Relu => z.relu()?,
                _ => (&z * netdsl_runtime::candle_nn::ops::sigmoid(&z)?)?,
            };
            assert_close(
                &conv2d(&x, &w, Some(&b), &spec, act)?,
                &want,
                &format!("wide case {i} {act:?}"),
            );
        }
    }
    Ok(())
}

/// A weight prepared with `Winograd::AtRunTime` runs direct at the sizes
/// where Winograd does not pay (128 channels over 7x7 at batch 1) and makes
/// its transform on the first call where it does (batch 8), with the
/// direct result either way; `Direct` never transforms.
#[test]
fn winograd_at_run_time_follows_the_call_sizes() -> Result<()> {
    let w = rand(&[128, 128, 3, 3], 5);
    let b = rand(&[128], 6);
    let spec = sym(1, 1, 1, 1);
    // The same choices with AVX-512's direct lowering and without it.
    assert!(!netdsl_summary::winograd_pays(128, 128, 1, 7, 7));
    assert!(netdsl_summary::winograd_pays(128, 128, 8, 7, 7));
    assert!(!netdsl_summary::winograd_pays_gathered(128, 128, 1, 7, 7));
    assert!(netdsl_summary::winograd_pays_gathered(128, 128, 8, 7, 7));
    let late = prepare_conv_with(w.clone(), Some(b.clone()), Winograd::AtRunTime)?;
    let never = prepare_conv_with(w.clone(), Some(b.clone()), Winograd::Direct)?;
    for (batch, transformed) in [(1, false), (8, true), (1, true)] {
        let x = rand(&[batch, 128, 7, 7], 7 + batch as u64);
        let want = conv2d(&x, &w, Some(&b), &spec, Epilogue::Relu)?;
        for p in [&late, &never] {
            assert_close(
                &conv2d_prepared(&x, p, &spec, Epilogue::Relu)?,
                &want,
                &format!("batch {batch}"),
            );
        }
        assert_eq!(late.has_winograd(), transformed, "batch {batch}");
        assert!(!never.has_winograd());
    }
    Ok(())
}

/// `Winograd::AtRunTime` at sizes where Winograd pays against the gathered
/// lowering but not against the direct one (32 channels over 32x32):
/// transformed on a CPU without AVX-512 (or with `NETDSL_NO_AVX512`),
/// not with it; the direct result either way.
#[test]
fn winograd_at_run_time_follows_the_cpu() -> Result<()> {
    assert!(!netdsl_summary::winograd_pays(32, 32, 1, 32, 32));
    assert!(netdsl_summary::winograd_pays_gathered(32, 32, 1, 32, 32));
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::env::var_os("NETDSL_NO_AVX512").is_none()
        && std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    let w = rand(&[32, 32, 3, 3], 11);
    let b = rand(&[32], 12);
    let spec = sym(1, 1, 1, 1);
    let late = prepare_conv_with(w.clone(), Some(b.clone()), Winograd::AtRunTime)?;
    let x = rand(&[1, 32, 32, 32], 13);
    let want = conv2d(&x, &w, Some(&b), &spec, Epilogue::Relu)?;
    assert_close(
        &conv2d_prepared(&x, &late, &spec, Epilogue::Relu)?,
        &want,
        "32x32",
    );
    assert_eq!(late.has_winograd(), !avx512);
    Ok(())
}
