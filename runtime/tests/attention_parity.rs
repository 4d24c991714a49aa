//! Parity with PyTorch of `netdsl_runtime`'s attention ops, forward and
//! backward: `layer_norm`, `rms_norm`, GELU (candle's, exact and tanh),
//! `scaled_dot_product_attention` and `multi_head_attention`.
//!
//! The fixture `tests/fixtures/attention.safetensors` (repo root) comes from
//! `scripts/gen_attention_fixtures.py`: for each case `<case>.<input>`,
//! `<case>.output`, `<case>.gout` (an upstream gradient) and
//! `<case>.grad.<input>` (`d sum(output * gout) / d input`).
//!
//! Tolerance: `1e-4 * max(1, max|torch|)` per compared tensor.

use std::collections::HashMap;
use std::sync::OnceLock;

use netdsl_runtime::candle::{Device, Tensor, Var};
use netdsl_runtime::layers::{LinearParams, MultiheadAttentionParams, NoBias};
use netdsl_runtime::{
    layer_norm, multi_head_attention, rms_norm, scaled_dot_product_attention, Fusion, Mask,
    MhaCache, MhaSpec, Result, Sdpa,
};

mod common;

fn fixtures() -> &'static HashMap<String, Tensor> {
    static F: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    F.get_or_init(|| common::load_fixture("attention.safetensors"))
}

fn get(case: &str, key: &str) -> Option<Tensor> {
    fixtures().get(&format!("{case}.{key}")).cloned()
}

/// Runs `f` on the case's inputs named in `inputs` (float ones as
/// variables), compares the output and the gradient of every input that has
/// one in the fixture.
fn check(case: &str, inputs: &[&str], f: impl Fn(&HashMap<&str, Tensor>) -> Result<Tensor>) {
    let mut vars = HashMap::new();
    let mut ts = HashMap::new();
    for name in inputs {
        let t = get(case, name).unwrap_or_else(|| panic!("{case}: no `{name}` in the fixture"));
        if t.dtype() == netdsl_runtime::candle::DType::F32 {
            let v = Var::from_tensor(&t).unwrap();
            ts.insert(*name, v.as_tensor().clone());
            vars.insert(*name, v);
        } else {
            ts.insert(*name, t);
        }
    }
    let out = f(&ts).unwrap_or_else(|e| panic!("{case}: {e}"));
    let want = get(case, "output").unwrap();
    let err = common::rel_err(&out, &want);
    eprintln!("{case}: output error {err:e}");
    assert!(err <= 1e-4, "{case}: output error {err:e}");
    let gout = get(case, "gout").unwrap();
    let grads = out
        .mul(&gout)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let mut compared = 0;
    for (name, v) in &vars {
        let Some(want) = get(case, &format!("grad.{name}")) else {
            continue;
        };
        let got = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{case}: no gradient for `{name}`"));
        let err = common::rel_err(got, &want);
        eprintln!("{case}: grad {name} error {err:e}");
        assert!(err <= 1e-4, "{case}: gradient of `{name}`: error {err:e}");
        compared += 1;
    }
    assert!(compared > 0, "{case}: no gradient compared");
}

#[test]
fn layer_norm_matches_torch() {
    for (case, dims) in [("ln_last", 1), ("ln_two_dims", 2), ("ln_offset", 1)] {
        check(case, &["x", "weight", "bias"], |t| {
            layer_norm(&t["x"], Some(&t["weight"]), Some(&t["bias"]), dims, 1e-5)
        });
    }
    check("ln_no_affine", &["x"], |t| {
        layer_norm(&t["x"], None, None, 1, 1e-5)
    });
}

#[test]
fn rms_norm_matches_torch() {
    check("rms_last", &["x", "weight"], |t| {
        rms_norm(&t["x"], Some(&t["weight"]), 1, 1e-6)
    });
    check("rms_two_dims", &["x"], |t| rms_norm(&t["x"], None, 2, 1e-6));
}

#[test]
fn gelu_matches_torch() {
    check("gelu_exact", &["x"], |t| Ok(t["x"].gelu_erf()?));
    check("gelu_tanh", &["x"], |t| Ok(t["x"].gelu()?));
}

#[test]
fn sdpa_matches_torch() {
    let plain = Sdpa::default();
    for (case, spec, mask) in [
        ("sdpa_plain", plain, None),
        (
            "sdpa_scale",
            Sdpa {
                scale: Some(0.3),
                ..plain
            },
            None,
        ),
        (
            "sdpa_causal",
            Sdpa {
                causal: true,
                ..plain
            },
            None,
        ),
        ("sdpa_bool_mask", plain, Some(false)),
        ("sdpa_add_mask", plain, Some(true)),
    ] {
        let mut inputs = vec!["q", "k", "v"];
        if mask.is_some() {
            inputs.push("mask");
        }
        check(case, &inputs, |t| {
            let m = match mask {
                None => None,
                Some(false) => Some(Mask::Keep(&t["mask"])),
                Some(true) => Some(Mask::Add(&t["mask"])),
            };
            // Training: the composed softmax, so gradients flow.
            scaled_dot_product_attention(&t["q"], &t["k"], &t["v"], m, &spec, true, None)
        });
        // Inference (fused softmax) gives the same output.
        let (q, k, v) = (
            get(case, "q").unwrap(),
            get(case, "k").unwrap(),
            get(case, "v").unwrap(),
        );
        let m = get(case, "mask");
        let m = match (mask, m.as_ref()) {
            (Some(false), Some(m)) => Some(Mask::Keep(m)),
            (Some(true), Some(m)) => Some(Mask::Add(m)),
            _ => None,
        };
        let out = scaled_dot_product_attention(&q, &k, &v, m, &spec, false, None).unwrap();
        assert!(
            common::rel_err(&out, &get(case, "output").unwrap()) <= 1e-4,
            "{case}: inference"
        );
    }
}

#[test]
fn mha_matches_torch() {
    let spec = MhaSpec {
        heads: 2,
        causal: false,
        dropout: 0.0,
    };
    let params = [
        "x",
        "p.in_proj_weight",
        "p.in_proj_bias",
        "p.out_proj.weight",
        "p.out_proj.bias",
    ];
    for (case, extra) in [
        ("mha_self", None),
        ("mha_self_mask", Some("mask")),
        ("mha_cross", Some("memory")),
    ] {
        let mut inputs = params.to_vec();
        inputs.extend(extra);
        check(case, &inputs, |t| {
            let p = MultiheadAttentionParams {
                in_proj_weight: t["p.in_proj_weight"].clone(),
                in_proj_bias: t["p.in_proj_bias"].clone(),
                out_proj: LinearParams {
                    weight: t["p.out_proj.weight"].clone(),
                    bias: t["p.out_proj.bias"].clone(),
                },
            };
            let mask = t.get("mask").map(Mask::Block);
            multi_head_attention(&t["x"], t.get("memory"), &p, &spec, mask, true, None, None)
        });
    }
    check(
        "mha_self_no_bias",
        &["x", "p.in_proj_weight", "p.out_proj.weight"],
        |t| {
            let p = MultiheadAttentionParams {
                in_proj_weight: t["p.in_proj_weight"].clone(),
                in_proj_bias: NoBias,
                out_proj: LinearParams {
                    weight: t["p.out_proj.weight"].clone(),
                    bias: NoBias,
                },
            };
            multi_head_attention(&t["x"], None, &p, &spec, None, true, None, None)
        },
    );
}

/// In inference with a cache, the projections' prepared weights give the
/// same outputs, from the cache on the second call; replacing a parameter
/// tensor prepares them again.
#[test]
fn mha_with_cached_projections_matches_torch() {
    let spec = MhaSpec {
        heads: 2,
        causal: false,
        dropout: 0.0,
    };
    for case in ["mha_self", "mha_cross"] {
        let t = |name: &str| get(case, name).unwrap();
        let mut p = MultiheadAttentionParams {
            in_proj_weight: t("p.in_proj_weight"),
            in_proj_bias: t("p.in_proj_bias"),
            out_proj: LinearParams {
                weight: t("p.out_proj.weight"),
                bias: t("p.out_proj.bias"),
            },
        };
        let fusion = Fusion::new(4);
        let memory = get(case, "memory");
        let run = |p: &MultiheadAttentionParams| {
            let cache = MhaCache {
                fusion: &fusion,
                slot: 0,
            };
            multi_head_attention(
                &t("x"),
                memory.as_ref(),
                p,
                &spec,
                None,
                false,
                None,
                Some(cache),
            )
            .unwrap()
        };
        let want = t("output");
        for call in 0..2 {
            let err = common::rel_err(&run(&p), &want);
            assert!(err <= 1e-4, "{case}, call {call}: output error {err:e}");
        }
        p.out_proj.weight = (p.out_proj.weight * 2.0).unwrap();
        let err = common::rel_err(&run(&p), &want);
        assert!(
            err > 1e-2,
            "{case}: a replaced weight was not prepared again"
        );
    }
}

/// The fused inference attention (per head on the packed kernel, the
/// causal mask as row lengths) equals the composed one (training's path,
/// dropout 0), with more keys than queries, fewer, and a value width of
/// its own; and at D = 64, the packed kernel's full panels.
#[test]
fn fused_inference_attention_equals_the_composed_one() {
    let dev = Device::Cpu;
    for (tq, tk, d, dv) in [(5, 7, 8, 6), (9, 4, 8, 8), (40, 40, 64, 64)] {
        let q = Tensor::randn(0f32, 1.0, (2, 3, tq, d), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 3, tk, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (2, 3, tk, dv), &dev).unwrap();
        for causal in [false, true] {
            let spec = Sdpa {
                causal,
                ..Sdpa::default()
            };
            let fused = scaled_dot_product_attention(&q, &k, &v, None, &spec, false, None).unwrap();
            let composed =
                scaled_dot_product_attention(&q, &k, &v, None, &spec, true, None).unwrap();
            assert_eq!(fused.dims(), [2, 3, tq, dv]);
            let err = common::rel_err(&fused, &composed);
            assert!(err <= 1e-5, "{tq}x{tk}, d {d}, causal {causal}: {err:e}");
        }
    }
}

/// Without a gradient (inference: one fused pass) and with one (the
/// differentiable steps), the same values, with and without the affine.
#[test]
fn layer_norm_inference_equals_the_differentiable_path() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 3.0, (4, 5, 24), &dev).unwrap();
    let w = Tensor::randn(1f32, 0.5, (5, 24), &dev).unwrap();
    let b = Tensor::randn(0f32, 0.5, (5, 24), &dev).unwrap();
    let tracked = Var::from_tensor(&x).unwrap();
    for (w, b) in [(Some(&w), Some(&b)), (Some(&w), None), (None, None)] {
        let fast = layer_norm(&x, w, b, 2, 1e-5).unwrap();
        let slow = layer_norm(tracked.as_tensor(), w, b, 2, 1e-5).unwrap();
        let d = (fast - slow).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() <= 1e-6);
    }
}

/// Hand-computed: a row `[1, 3]` has mean 2 and biased variance 1, so it
/// normalises to `[-1, 1]` (eps 0), then `* [2, 3] + [1, 0]`.
#[test]
fn layer_norm_by_hand() {
    let dev = Device::Cpu;
    let x = Tensor::new(&[[1f32, 3.]], &dev).unwrap();
    let w = Tensor::new(&[2f32, 3.], &dev).unwrap();
    let b = Tensor::new(&[1f32, 0.], &dev).unwrap();
    let y = layer_norm(&x, Some(&w), Some(&b), 1, 0.0).unwrap();
    assert_eq!(y.to_vec2::<f32>().unwrap(), [[-1.0, 3.0]]);
    // Over more dims than the tensor has: an error, not a panic.
    assert!(layer_norm(&x, None, None, 3, 1e-5).is_err());
}

/// Hand-computed: one query `[1, 0]`, keys `[1, 0]` and `[0, 1]`, scale 1:
/// scores `[1, 0]`, weights `[e/(e+1), 1/(e+1)]`, values `[10]` and `[0]`.
/// Causal with one query keeps only the first key: the output is 10.
#[test]
fn sdpa_by_hand() {
    let dev = Device::Cpu;
    let q = Tensor::new(&[[1f32, 0.]], &dev).unwrap();
    let k = Tensor::new(&[[1f32, 0.], [0., 1.]], &dev).unwrap();
    let v = Tensor::new(&[[10f32], [0.]], &dev).unwrap();
    let spec = Sdpa {
        scale: Some(1.0),
        ..Sdpa::default()
    };
    let y = scaled_dot_product_attention(&q, &k, &v, None, &spec, false, None).unwrap();
    let e = std::f32::consts::E;
    let want = 10.0 * e / (e + 1.0);
    assert!((y.to_vec2::<f32>().unwrap()[0][0] - want).abs() < 1e-5);
    let causal = Sdpa {
        causal: true,
        ..spec
    };
    let y = scaled_dot_product_attention(&q, &k, &v, None, &causal, false, None).unwrap();
    assert!((y.to_vec2::<f32>().unwrap()[0][0] - 10.0).abs() < 1e-5);
    // Mismatched feature sizes: an error.
    let k3 = Tensor::new(&[[1f32, 0., 0.]], &dev).unwrap();
    assert!(scaled_dot_product_attention(&q, &k3, &v, None, &spec, false, None).is_err());
}

#[test]
fn sinusoidal_by_hand() {
    let pe =
        netdsl_runtime::sinusoidal_encoding(3, 4, netdsl_runtime::candle::DType::F32, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
    // position 0: sin 0, cos 0, sin 0, cos 0
    assert_eq!(pe[0], [0.0, 1.0, 0.0, 1.0]);
    // position 2, pair 1: angle 2 / 10000^(2/4) = 0.02
    assert!((pe[2][2] - 0.02f32.sin()).abs() < 1e-7);
    assert!((pe[2][3] - 0.02f32.cos()).abs() < 1e-7);
    assert!((pe[1][0] - 1f32.sin()).abs() < 1e-7);
}
