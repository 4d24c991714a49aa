//! Parity with PyTorch for the sequence ops: `Conv1d` over every option
//! (causal included, at batch sizes above one), `MaxPool1d`, `AvgPool1d`,
//! the adaptive 1-D pools, `Transpose`, and `Embedding` with and without
//! `padding_idx` (whose row's gradient stays zero).
//!
//! Fixtures: `scripts/gen_sequence_fixtures.py` writes
//! `tests/fixtures/sequence.safetensors`. Each case is one tiny network, a
//! fixed random input and `loss = sum(net(x) * R)` with a fixed random `R`;
//! the loss, `d loss / d x` and every parameter's gradient must agree with
//! PyTorch's (computed in float64) within `1e-4 * max(1, max |torch|)`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use netdsl::candle::{DType, Device, Tensor, Var};
use netdsl::{network, ParamSource, ParamSpec};

network! {
    /// `conv1d_basic`
    Conv1dBasic(x: [B, 3, 10]) -> [B, 4, 8] { x -> conv: Conv1d(3 -> 4, kernel = 3) }
    /// `conv1d_stride2_pad1`
    Conv1dStride2Pad1(x: [B, 3, 11]) -> [B, 4, 6] { x -> conv: Conv1d(3 -> 4, kernel = 3, stride = 2, padding = 1) }
    /// `conv1d_stride3`
    Conv1dStride3(x: [B, 2, 13]) -> [B, 3, 4] { x -> conv: Conv1d(2 -> 3, kernel = 4, stride = 3) }
    /// `conv1d_dilation`
    Conv1dDilation(x: [B, 3, 12]) -> [B, 4, 10] { x -> conv: Conv1d(3 -> 4, kernel = 3, dilation = 2, padding = 1) }
    /// `conv1d_groups`
    Conv1dGroups(x: [B, 4, 9]) -> [B, 6, 9] { x -> conv: Conv1d(4 -> 6, kernel = 3, groups = 2, padding = 1) }
    /// `conv1d_depthwise`
    Conv1dDepthwise(x: [B, 4, 9]) -> [B, 4, 5] { x -> conv: Conv1d(4 -> 4, kernel = 5, groups = 4) }
    /// `conv1d_no_bias`
    Conv1dNoBias(x: [B, 3, 8]) -> [B, 4, 6] { x -> conv: Conv1d(3 -> 4, kernel = 3, bias = false) }
    /// `conv1d_same_even`
    Conv1dSameEven(x: [B, 3, 9]) -> [B, 4, 9] { x -> conv: Conv1d(3 -> 4, kernel = 4, padding = same) }
    /// `conv1d_same_dilated`
    Conv1dSameDilated(x: [B, 3, 9]) -> [B, 2, 9] { x -> conv: Conv1d(3 -> 2, kernel = 3, dilation = 3, padding = same) }
    /// `conv1d_mixed`
    Conv1dMixed(x: [B, 4, 15]) -> [B, 6, 8] { x -> conv: Conv1d(4 -> 6, kernel = 3, stride = 2, padding = 2, dilation = 2, groups = 2) }
    /// `conv1d_causal`
    Conv1dCausal(x: [B, 3, 10]) -> [B, 4, 10] { x -> conv: Conv1d(3 -> 4, kernel = 3, causal = true) }
    /// `conv1d_causal_dilated`
    Conv1dCausalDilated(x: [B, 3, 10]) -> [B, 4, 10] { x -> conv: Conv1d(3 -> 4, kernel = 3, dilation = 4, causal = true) }
    /// `conv1d_batch4`
    Conv1dBatch4(x: [B, 5, 16]) -> [B, 3, 16] { x -> conv: Conv1d(5 -> 3, kernel = 5, padding = 2) }
    /// `max_pool1d_2`
    MaxPool1d2(x: [B, 3, 9]) -> [B, 3, 4] { x -> MaxPool1d(2) }
    /// `max_pool1d_3_2_pad`
    MaxPool1d32Pad(x: [B, 3, 10]) -> [B, 3, 5] { x -> MaxPool1d(3, stride = 2, padding = 1) }
    /// `max_pool1d_ceil_dil`
    MaxPool1dCeilDil(x: [B, 3, 11]) -> [B, 3, 5] { x -> MaxPool1d(2, stride = 2, dilation = 2, ceil_mode = true) }
    /// `avg_pool1d_2`
    AvgPool1d2(x: [B, 3, 9]) -> [B, 3, 4] { x -> AvgPool1d(2) }
    /// `avg_pool1d_pad_exclude`
    AvgPool1dPadExclude(x: [B, 3, 9]) -> [B, 3, 5] { x -> AvgPool1d(3, stride = 2, padding = 1, count_include_pad = false) }
    /// `avg_pool1d_ceil`
    AvgPool1dCeil(x: [B, 3, 10]) -> [B, 3, 5] { x -> AvgPool1d(3, stride = 2, ceil_mode = true) }
    /// `adaptive_avg1d_4`
    AdaptiveAvg1d4(x: [B, 3, 10]) -> [B, 3, 4] { x -> AdaptiveAvgPool1d(4) }
    /// `adaptive_avg1d_1`
    AdaptiveAvg1d1(x: [B, 3, 7]) -> [B, 3, 1] { x -> AdaptiveAvgPool1d(1) }
    /// `adaptive_max1d_3`
    AdaptiveMax1d3(x: [B, 3, 10]) -> [B, 3, 3] { x -> AdaptiveMaxPool1d(3) }
    /// `transpose_conv`
    TransposeConv(x: [B, 7, 3]) -> [B, 7, 4] { x -> Transpose(1, 2) -> conv: Conv1d(3 -> 4, kernel = 3, padding = 1) -> Transpose(1, 2) }
    /// `embedding`
    Embed(ids: [B, 5] u32) -> [B, 5, 3] { ids -> emb: Embedding(7, 3) }
    /// `embedding_pad`
    EmbedPad(ids: [B, 4] u32) -> [B, 4, 4] { ids -> emb: Embedding(6, 4, padding_idx = 0) }
    /// `embedding_pad_neg`
    EmbedPadNeg(ids: [B, 6] u32) -> [B, 6, 2] { ids -> emb: Embedding(5, 2, padding_idx = -1) }
    /// `conv1d_causal` again, over any length.
    Conv1dCausalAnyT(x: [B, 3, T]) -> [B, 4, T] { x -> conv: Conv1d(3 -> 4, kernel = 3, causal = true) }
    /// `conv1d_stride2_pad1` again, over any length.
    Conv1dStride2AnyT(x: [B, 3, T]) -> [B, 4, (T + 1) / 2] { x -> conv: Conv1d(3 -> 4, kernel = 3, stride = 2, padding = 1) }
    /// `embedding_pad` again, with i64 ids of any length.
    EmbedPadI64(ids: [B, T] i64) -> [B, T, 4] { ids -> emb: Embedding(6, 4, padding_idx = 0) }
}

fn fixtures() -> &'static HashMap<String, Tensor> {
    static FIXTURES: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sequence.safetensors");
        netdsl::candle::safetensors::load(path, &Device::Cpu).unwrap()
    })
}

fn get(key: &str) -> &'static Tensor {
    fixtures().get(key).unwrap_or_else(|| {
        panic!("no `{key}` in sequence.safetensors: rerun scripts/gen_sequence_fixtures.py")
    })
}

/// The tensors under `prefix`, prefix stripped.
fn with_prefix(prefix: &str) -> HashMap<String, Tensor> {
    fixtures()
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
        .collect()
}

/// A state_dict handed to `from_source` by name.
struct MapSource(HashMap<String, Tensor>);

impl ParamSource for MapSource {
    fn take(&mut self, spec: &ParamSpec) -> netdsl::Result<Tensor> {
        self.0.remove(spec.name).ok_or_else(|| {
            netdsl::candle::Error::Msg(format!("no `{}` in the state", spec.name)).into()
        })
    }
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// max |got - want| <= 1e-4 * max(1, max |want|); a failure is pushed.
fn compare(failures: &mut Vec<String>, what: &str, got: &Tensor, want: &Tensor) {
    if got.dims() != want.dims() {
        failures.push(format!(
            "{what}: shape {:?}, torch {:?}",
            got.dims(),
            want.dims()
        ));
        return;
    }
    let err = max_abs(&got.sub(want).unwrap());
    let tol = 1e-4 * max_abs(want).max(1.0);
    eprintln!("  {what}: max err {err:e} (tolerance {tol:e})");
    if err.is_nan() || err > tol {
        failures.push(format!("{what}: max |netdsl - torch| = {err:e} > {tol:e}"));
    }
}

/// `loss = sum(out * R)` backpropagated; the loss, the input's gradient
/// (when the input is a variable) and every parameter's vs PyTorch's.
fn check(
    case: &str,
    vars: Vec<(&'static str, Var)>,
    input: Option<&Var>,
    out: Tensor,
    failures: &mut Vec<String>,
) {
    let r = get(&format!("{case}.r"));
    assert_eq!(out.dims(), r.dims(), "{case}: output shape");
    let loss = out.mul(r).unwrap().sum_all().unwrap();
    compare(failures, "loss", &loss, get(&format!("{case}.loss")));
    let grads = loss.backward().unwrap();
    if let Some(x) = input {
        match grads.get(x.as_tensor()) {
            Some(g) => compare(
                failures,
                "grad input",
                g,
                get(&format!("{case}.grad_input")),
            ),
            None => failures.push("no gradient for the input".into()),
        }
    }
    let mut want = with_prefix(&format!("{case}.grad."));
    for (name, var) in &vars {
        let Some(w) = want.remove(*name) else {
            failures.push(format!(
                "`{name}` is a variable, torch has no such parameter"
            ));
            continue;
        };
        match grads.get(var.as_tensor()) {
            Some(g) => compare(failures, &format!("grad {name}"), g, &w),
            None => failures.push(format!("no gradient for `{name}`")),
        }
    }
    if !want.is_empty() {
        failures.push(format!(
            "torch parameters that are no variable: {:?}",
            want.keys()
        ));
    }
    assert!(
        failures.is_empty(),
        "{case}: {} mismatch(es) with PyTorch:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

macro_rules! float_cases {
    ($($test:ident: $net:ident = $case:literal;)*) => {$(
        #[test]
        fn $test() {
            let case = $case;
            eprintln!("{case}:");
            let mut source = MapSource(with_prefix(&format!("{case}.state.")));
            let mut net = $net::from_source(&mut source)
                .unwrap_or_else(|e| panic!("{case}: building: {e}"));
            assert!(source.0.is_empty(), "{case}: unused state: {:?}", source.0.keys());
            net.train();
            let x = Var::from_tensor(get(&format!("{case}.input"))).unwrap();
            let out = net.forward(x.as_tensor()).unwrap_or_else(|e| panic!("{case}: forward: {e}"));
            check(case, net.named_vars().unwrap(), Some(&x), out, &mut Vec::new());
        }
    )*
        const FLOAT_CASES: &[&str] = &[$($case),*];
    };
}

macro_rules! embedding_cases {
    ($($test:ident: $net:ident = $case:literal;)*) => {$(
        #[test]
        fn $test() {
            let case = $case;
            eprintln!("{case}:");
            let mut source = MapSource(with_prefix(&format!("{case}.state.")));
            let mut net = $net::from_source(&mut source).unwrap();
            net.train();
            let ids = get(&format!("{case}.ids")).to_dtype(DType::U32).unwrap();
            let out = net.forward(&ids).unwrap_or_else(|e| panic!("{case}: forward: {e}"));
            check(case, net.named_vars().unwrap(), None, out, &mut Vec::new());
        }
    )*
        const EMBEDDING_CASES: &[&str] = &[$($case),*];
    };
}

float_cases! {
    conv1d_basic: Conv1dBasic = "conv1d_basic";
    conv1d_stride2_pad1: Conv1dStride2Pad1 = "conv1d_stride2_pad1";
    conv1d_stride3: Conv1dStride3 = "conv1d_stride3";
    conv1d_dilation: Conv1dDilation = "conv1d_dilation";
    conv1d_groups: Conv1dGroups = "conv1d_groups";
    conv1d_depthwise: Conv1dDepthwise = "conv1d_depthwise";
    conv1d_no_bias: Conv1dNoBias = "conv1d_no_bias";
    conv1d_same_even: Conv1dSameEven = "conv1d_same_even";
    conv1d_same_dilated: Conv1dSameDilated = "conv1d_same_dilated";
    conv1d_mixed: Conv1dMixed = "conv1d_mixed";
    conv1d_causal: Conv1dCausal = "conv1d_causal";
    conv1d_causal_dilated: Conv1dCausalDilated = "conv1d_causal_dilated";
    conv1d_batch4: Conv1dBatch4 = "conv1d_batch4";
    max_pool1d_2: MaxPool1d2 = "max_pool1d_2";
    max_pool1d_3_2_pad: MaxPool1d32Pad = "max_pool1d_3_2_pad";
    max_pool1d_ceil_dil: MaxPool1dCeilDil = "max_pool1d_ceil_dil";
    avg_pool1d_2: AvgPool1d2 = "avg_pool1d_2";
    avg_pool1d_pad_exclude: AvgPool1dPadExclude = "avg_pool1d_pad_exclude";
    avg_pool1d_ceil: AvgPool1dCeil = "avg_pool1d_ceil";
    adaptive_avg1d_4: AdaptiveAvg1d4 = "adaptive_avg1d_4";
    adaptive_avg1d_1: AdaptiveAvg1d1 = "adaptive_avg1d_1";
    adaptive_max1d_3: AdaptiveMax1d3 = "adaptive_max1d_3";
    transpose_conv: TransposeConv = "transpose_conv";
}

embedding_cases! {
    embedding: Embed = "embedding";
    embedding_pad: EmbedPad = "embedding_pad";
    embedding_pad_neg: EmbedPadNeg = "embedding_pad_neg";
}

/// Every case in the fixture file has a test above, and the reverse.
#[test]
fn every_fixture_case_is_tested() {
    let mut in_file: Vec<&str> = fixtures()
        .keys()
        .filter_map(|k| k.strip_suffix(".r"))
        .collect();
    in_file.sort_unstable();
    let mut tested: Vec<&str> = FLOAT_CASES.iter().chain(EMBEDDING_CASES).copied().collect();
    tested.sort_unstable();
    assert_eq!(in_file, tested);
}

/// The same weights and input through a network declared over any length.
fn same_as(case: &str, out: Tensor) {
    let want = get(&format!("{case}.r")).dims().to_vec();
    assert_eq!(out.dims(), want.as_slice(), "{case}");
}

#[test]
fn symbolic_length_gives_the_same_values() {
    let state = |case: &str| MapSource(with_prefix(&format!("{case}.state.")));
    let x = get("conv1d_causal.input");
    let fixed = Conv1dCausal::from_source(&mut state("conv1d_causal")).unwrap();
    let any = Conv1dCausalAnyT::from_source(&mut state("conv1d_causal")).unwrap();
    let (a, b) = (fixed.forward(x).unwrap(), any.forward(x).unwrap());
    assert_eq!(max_abs(&a.sub(&b).unwrap()), 0.0);
    same_as("conv1d_causal", b);
    // Another length through the same network.
    let long = Tensor::zeros((2, 3, 37), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(any.forward(&long).unwrap().dims(), &[2, 4, 37]);
    // Stride 2 with padding 1 gives PyTorch's (T + 1)/2 rows for any T,
    // odd ones included.
    let net = Conv1dStride2AnyT::from_source(&mut state("conv1d_stride2_pad1")).unwrap();
    for t in [1usize, 2, 7, 8, 12, 13] {
        let x = Tensor::zeros((1, 3, t), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            net.forward(&x).unwrap().dims(),
            &[1, 4, t.div_ceil(2)],
            "T = {t}"
        );
    }
}

/// A causal convolution's output at step t does not change when later
/// inputs do.
#[test]
fn causal_output_does_not_see_the_future() {
    let net =
        Conv1dCausalAnyT::from_source(&mut MapSource(with_prefix("conv1d_causal.state."))).unwrap();
    let x = get("conv1d_causal.input");
    let y = net.forward(x).unwrap();
    let t = 6;
    let later = Tensor::ones((2, 3, 10 - t), DType::F32, &Device::Cpu).unwrap();
    let changed = Tensor::cat(&[&x.narrow(2, 0, t).unwrap(), &later], 2).unwrap();
    let y2 = net.forward(&changed).unwrap();
    let head = |y: &Tensor| y.narrow(2, 0, t).unwrap();
    assert_eq!(max_abs(&head(&y).sub(&head(&y2)).unwrap()), 0.0);
    assert!(max_abs(&y.sub(&y2).unwrap()) > 0.0);
}

#[test]
fn ids_of_the_declared_dtype_any_length_and_range() {
    let case = "embedding_pad";
    let net =
        EmbedPadI64::from_source(&mut MapSource(with_prefix(&format!("{case}.state.")))).unwrap();
    let ids = get(&format!("{case}.ids"));
    assert_eq!(ids.dtype(), DType::I64);
    let out = net.forward(ids).unwrap();
    let want = EmbedPad::from_source(&mut MapSource(with_prefix(&format!("{case}.state."))))
        .unwrap()
        .forward(&ids.to_dtype(DType::U32).unwrap())
        .unwrap();
    assert_eq!(max_abs(&out.sub(&want).unwrap()), 0.0);
    // Another dtype than declared.
    let e = net
        .forward(&ids.to_dtype(DType::U32).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("takes token ids of dtype I64, but was given a U32 tensor"),
        "{e}"
    );
    let e = net
        .forward(&ids.to_dtype(DType::F32).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("but was given a F32 tensor"), "{e}");
    // An id outside the vocabulary of 6, at row 1, column 2.
    let bad = Tensor::new(&[[1i64, 2, 3], [4, 5, 6]], &Device::Cpu).unwrap();
    let e = net.forward(&bad).unwrap_err();
    assert!(
        matches!(
            e,
            netdsl::Error::TokenId {
                id: 6,
                vocab: 6,
                ..
            }
        ),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("`emb`: token id 6 at position [1, 2] is outside the vocabulary of 6 (ids run from 0 to 5)"),
        "{e}"
    );
    let neg = Tensor::new(&[[1i64, -1]], &Device::Cpu).unwrap();
    let e = net.forward(&neg).unwrap_err().to_string();
    assert!(e.contains("token id -1 at position [0, 1]"), "{e}");
}

#[test]
fn embedding_init_is_standard_normal_with_the_padding_row_zero() {
    let net = EmbedPad::new_seeded(3, &Device::Cpu).unwrap();
    let w = net.emb.weight.clone();
    assert_eq!(w.dims(), &[6, 4]);
    let rows: Vec<Vec<f32>> = w.to_vec2().unwrap();
    assert!(rows[0].iter().all(|&v| v == 0.0), "{rows:?}");
    assert!(rows[1..].iter().flatten().all(|&v| v != 0.0));
    // N(0, 1) over a large table: mean near 0, std near 1.
    network! { Big(ids: [B, T] u32) -> [B, T, 100] { ids -> emb: Embedding(1000, 100, padding_idx = 7) } }
    let big = Big::new_seeded(0, &Device::Cpu).unwrap();
    let w = big.emb.weight.flatten_all().unwrap();
    let mean: f32 = w.mean_all().unwrap().to_scalar().unwrap();
    let std: f32 = w
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .sqrt();
    assert!(
        mean.abs() < 0.01 && (std - 1.0).abs() < 0.01,
        "mean {mean}, std {std}"
    );
    let row7: Vec<f32> = big.emb.weight.get(7).unwrap().to_vec1().unwrap();
    assert!(row7.iter().all(|&v| v == 0.0));
}

/// The summary states each conv stack's receptive field and whether an
/// output sees the future.
#[test]
fn summary_states_receptive_field_and_causality() {
    let s = Conv1dCausalDilated::SUMMARY;
    // kernel 3, dilation 4: 1 + 4*(3-1) = 9 steps.
    assert!(
        s.contains("stack `conv`: receptive field 9 steps, causal"),
        "{s}"
    );
    assert!(s.contains("causal: no output sees the future"), "{s}");
    // kernel 4 with `same` pads (1, 2): output t reads up to t + 2.
    let s = Conv1dSameEven::SUMMARY;
    assert!(s.contains("stack `conv`: receptive field 4 steps\n"), "{s}");
    assert!(
        s.contains("not causal: from `conv` on, an output sees 2 steps ahead"),
        "{s}"
    );
    network! {
        Residual(x: [B, 4, T]) -> [B, 4, T] {
            let y = x -> c1: Conv1d(4, kernel = 3, causal = true) -> relu
                      -> c2: Conv1d(4, kernel = 3, dilation = 2, causal = true);
            (x + y) -> c3: Conv1d(4, kernel = 2, dilation = 4, causal = true)
        }
    }
    // c1, c2: 1 + 2 + 4 = 7; then c3: 7 + 4 = 11 for the output.
    let s = Residual::SUMMARY;
    assert!(
        s.contains("stack `c1` .. `c2` (2 layers): receptive field 7 steps, causal"),
        "{s}"
    );
    assert!(s.contains("output: receptive field 11 steps"), "{s}");
    assert!(s.contains("causal: no output sees the future"), "{s}");
}
