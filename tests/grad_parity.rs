//! Gradient parity with PyTorch: every op of the DSL in training mode (and a
//! convolution with each activation its epilogue fuses), a LeNet training
//! step, a train-mode step of the batch-norm CNN (gradients
//! and running statistics), and live dropout.
//!
//! Fixtures: `scripts/gen_grad_fixtures.py` writes
//! `tests/fixtures/grads.safetensors`; PyTorch's references are computed in
//! float64 from the same float32 inputs and parameters. Every op case is one
//! tiny network (the op alone, or the op with its parameters), a fixed
//! random input `x`, and `loss = sum(net(x) * R)` with a fixed random `R`, so
//! every gradient is non-trivial. The loss, `d loss / d x` and every
//! parameter's gradient must agree with PyTorch's within
//! `1e-4 * max(1, max |torch|)`, and for batch norms so must the running
//! statistics and `num_batches_tracked` after the step.
//!
//! Deliberately not tested (the inputs are random normals, so they never
//! occur): ReLU at exactly 0 (PyTorch's relu'(0) is 0, candle's is 1; the
//! same kind of difference sits at ReLU6's 0 and 6 and Hardswish's -3 and 3)
//! and ties inside a max-pooling window (PyTorch sends the whole gradient to
//! one of the tied elements, candle's `maximum` splits it between them).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use netdsl::candle::{DType, Device, Tensor, Var};
use netdsl::{network, ParamSource, ParamSpec};

network! {
    /// `conv_basic`
    ConvBasic(x: [B, 3, 7, 8]) -> [B, 4, 5, 6] { x -> conv: Conv2d(3 -> 4, kernel = 3) }
    /// `conv_stride2_pad1`
    ConvStride2Pad1(x: [B, 3, 7, 8]) -> [B, 4, 4, 4] { x -> conv: Conv2d(3 -> 4, kernel = 3, stride = 2, padding = 1) }
    /// `conv_stride2_odd`
    ConvStride2Odd(x: [B, 3, 9, 8]) -> [B, 4, 4, 3] { x -> conv: Conv2d(3 -> 4, kernel = 3, stride = 2) }
    /// `conv_asym_pad`
    ConvAsymPad(x: [B, 3, 7, 8]) -> [B, 4, 8, 9] { x -> conv: Conv2d(3 -> 4, kernel = 3, padding = (1, 2, 0, 3)) }
    /// `conv_axis_pad`
    ConvAxisPad(x: [B, 3, 7, 8]) -> [B, 4, 7, 10] { x -> conv: Conv2d(3 -> 4, kernel = 3, padding = (1, 2)) }
    /// `conv_stride_2_1`
    ConvStride21(x: [B, 3, 7, 8]) -> [B, 4, 4, 8] { x -> conv: Conv2d(3 -> 4, kernel = 3, stride = (2, 1), padding = 1) }
    /// `conv_stride_1_3`
    ConvStride13(x: [B, 3, 7, 8]) -> [B, 4, 5, 2] { x -> conv: Conv2d(3 -> 4, kernel = 3, stride = (1, 3)) }
    /// `conv_dilation`
    ConvDilation(x: [B, 3, 7, 8]) -> [B, 4, 5, 6] { x -> conv: Conv2d(3 -> 4, kernel = 3, dilation = 2, padding = 1) }
    /// `conv_groups`
    ConvGroups(x: [B, 4, 7, 8]) -> [B, 6, 7, 8] { x -> conv: Conv2d(4 -> 6, kernel = 3, groups = 2, padding = 1) }
    /// `conv_depthwise`
    ConvDepthwise(x: [B, 4, 7, 8]) -> [B, 4, 5, 6] { x -> conv: Conv2d(4 -> 4, kernel = 3, groups = 4) }
    /// `conv_no_bias`
    ConvNoBias(x: [B, 3, 7, 8]) -> [B, 4, 5, 6] { x -> conv: Conv2d(3 -> 4, kernel = 3, bias = false) }
    /// `conv_same_even`
    ConvSameEven(x: [B, 3, 7, 8]) -> [B, 4, 7, 8] { x -> conv: Conv2d(3 -> 4, kernel = 4, padding = same) }
    /// `conv_kernel_3_5`
    ConvKernel35(x: [B, 3, 7, 8]) -> [B, 4, 5, 4] { x -> conv: Conv2d(3 -> 4, kernel = (3, 5)) }
    /// `conv_mixed`
    ConvMixed(x: [B, 4, 9, 11]) -> [B, 6, 4, 4] { x -> conv: Conv2d(4 -> 6, kernel = (3, 2), stride = (2, 3), padding = (2, 0, 1, 1), dilation = 2, groups = 2) }
    /// `conv_relu`
    ConvRelu(x: [B, 3, 5, 6]) -> [B, 3, 3, 4] { x -> conv: Conv2d(3 -> 3, kernel = 3) -> relu }
    /// `conv_leaky_relu`
    ConvLeakyRelu(x: [B, 3, 5, 6]) -> [B, 3, 3, 4] { x -> conv: Conv2d(3 -> 3, kernel = 3) -> LeakyReLU(0.2) }
    /// `conv_gelu`
    ConvGelu(x: [B, 3, 5, 6]) -> [B, 3, 3, 4] { x -> conv: Conv2d(3 -> 3, kernel = 3) -> GELU }
    /// `conv_gelu_tanh`
    ConvGeluTanh(x: [B, 3, 5, 6]) -> [B, 3, 3, 4] { x -> conv: Conv2d(3 -> 3, kernel = 3) -> GELU(approximate = tanh) }
    /// `conv_silu`
    ConvSilu(x: [B, 3, 5, 6]) -> [B, 3, 3, 4] { x -> conv: Conv2d(3 -> 3, kernel = 3) -> SiLU }
    /// `conv_sigmoid`
    ConvSigmoid(x: [B, 3, 5, 6]) -> [B, 3, 3, 4] { x -> conv: Conv2d(3 -> 3, kernel = 3) -> Sigmoid }
    /// `conv_bn_relu`
    ConvBnRelu(x: [B, 3, 5, 6]) -> [B, 3, 3, 4] { x -> conv: Conv2d(3 -> 3, kernel = 3) -> bn: BatchNorm2d -> relu }
    /// `conv_transpose`
    ConvTranspose(x: [B, 3, 4, 5]) -> [B, 2, 9, 11] { x -> up: ConvTranspose2d(3 -> 2, kernel = 3, stride = 2) }
    /// `conv_transpose_mixed`
    ConvTransposeMixed(x: [B, 4, 3, 4]) -> [B, 2, 6, 10] { x -> up: ConvTranspose2d(4 -> 2, kernel = (2, 3), stride = 2, padding = 1, output_padding = 1, dilation = 2, groups = 2) }
    /// `upsample_nearest`
    UpsampleNearest(x: [B, 2, 4, 4]) -> [B, 2, 7, 6] { x -> Upsample(size = (7, 6)) }
    /// `upsample_bilinear_corners`
    UpsampleBilinearCorners(x: [B, 2, 3, 4]) -> [B, 2, 5, 7] { x -> Upsample(size = (5, 7), mode = bilinear, align_corners = true) }
    /// `upsample_bilinear_x2`
    UpsampleBilinearX2(x: [B, 2, 3, 4]) -> [B, 2, 6, 8] { x -> Upsample(scale_factor = 2, mode = bilinear) }
    /// `pixel_shuffle`
    PixelShuffleNet(x: [B, 8, 2, 3]) -> [B, 2, 4, 6] { x -> PixelShuffle(2) }
    /// `max_pool_2`
    MaxPool2(x: [B, 3, 7, 9]) -> [B, 3, 3, 4] { x -> max_pool(2) }
    /// `max_pool_2_div`
    MaxPool2Div(x: [B, 3, 8, 10]) -> [B, 3, 4, 5] { x -> MaxPool2d(2) }
    /// `max_pool_3_2`
    MaxPool32(x: [B, 3, 9, 11]) -> [B, 3, 4, 5] { x -> MaxPool2d(3, stride = 2) }
    /// `max_pool_2x3_s12`
    MaxPool2x3S12(x: [B, 3, 7, 9]) -> [B, 3, 6, 4] { x -> MaxPool2d(kernel = (2, 3), stride = (1, 2)) }
    /// `max_pool_pad`
    MaxPoolPad(x: [B, 3, 7, 9]) -> [B, 3, 4, 5] { x -> MaxPool2d(3, stride = 2, padding = 1) }
    /// `max_pool_ceil`
    MaxPoolCeil(x: [B, 3, 7, 9]) -> [B, 3, 4, 5] { x -> MaxPool2d(2, ceil_mode = true) }
    /// `max_pool_dilation`
    MaxPoolDilation(x: [B, 3, 7, 9]) -> [B, 3, 3, 7] { x -> MaxPool2d(3, stride = 1, dilation = (2, 1)) }
    /// `max_pool_mixed`
    MaxPoolMixed(x: [B, 3, 7, 9]) -> [B, 3, 4, 7] { x -> MaxPool2d(kernel = (2, 3), stride = (2, 1), padding = 1, dilation = (1, 2), ceil_mode = true) }
    /// `avg_pool_2`
    AvgPool2(x: [B, 3, 7, 9]) -> [B, 3, 3, 4] { x -> avg_pool(2) }
    /// `avg_pool_2_div`
    AvgPool2Div(x: [B, 3, 8, 10]) -> [B, 3, 4, 5] { x -> AvgPool2d(2) }
    /// `avg_pool_3_2`
    AvgPool32(x: [B, 3, 9, 11]) -> [B, 3, 4, 5] { x -> AvgPool2d(3, stride = 2) }
    /// `avg_pool_2x3_s12`
    AvgPool2x3S12(x: [B, 3, 7, 9]) -> [B, 3, 6, 4] { x -> AvgPool2d(kernel = (2, 3), stride = (1, 2)) }
    /// `avg_pool_pad`
    AvgPoolPad(x: [B, 3, 7, 9]) -> [B, 3, 4, 5] { x -> AvgPool2d(3, stride = 2, padding = 1) }
    /// `avg_pool_pad_exclude`
    AvgPoolPadExclude(x: [B, 3, 7, 9]) -> [B, 3, 7, 9] { x -> AvgPool2d(3, stride = 1, padding = 1, count_include_pad = false) }
    /// `avg_pool_ceil`
    AvgPoolCeil(x: [B, 3, 7, 9]) -> [B, 3, 4, 5] { x -> AvgPool2d(2, ceil_mode = true) }
    /// `avg_pool_ceil_pad`
    AvgPoolCeilPad(x: [B, 3, 8, 10]) -> [B, 3, 5, 6] { x -> AvgPool2d(3, stride = 2, padding = 1, ceil_mode = true) }
    /// `avg_pool_ceil_pad_exclude`
    AvgPoolCeilPadExclude(x: [B, 3, 8, 10]) -> [B, 3, 5, 6] { x -> AvgPool2d(3, stride = 2, padding = 1, ceil_mode = true, count_include_pad = false) }
    /// `adaptive_avg_1`
    AdaptiveAvg1(x: [B, 3, 7, 9]) -> [B, 3, 1, 1] { x -> AdaptiveAvgPool2d(1) }
    /// `adaptive_avg_3x4`
    AdaptiveAvg3x4(x: [B, 3, 7, 9]) -> [B, 3, 3, 4] { x -> AdaptiveAvgPool2d((3, 4)) }
    /// `adaptive_avg_div`
    AdaptiveAvgDiv(x: [B, 3, 8, 10]) -> [B, 3, 4, 5] { x -> adaptive_avg_pool((4, 5)) }
    /// `adaptive_avg_up`
    AdaptiveAvgUp(x: [B, 3, 5, 5]) -> [B, 3, 6, 6] { x -> AdaptiveAvgPool2d((6, 6)) }
    /// `adaptive_max_1`
    AdaptiveMax1(x: [B, 3, 7, 9]) -> [B, 3, 1, 1] { x -> AdaptiveMaxPool2d(1) }
    /// `adaptive_max_3x4`
    AdaptiveMax3x4(x: [B, 3, 7, 9]) -> [B, 3, 3, 4] { x -> AdaptiveMaxPool2d((3, 4)) }
    /// `adaptive_max_div`
    AdaptiveMaxDiv(x: [B, 3, 8, 10]) -> [B, 3, 4, 5] { x -> adaptive_max_pool((4, 5)) }
    /// `adaptive_max_up`
    AdaptiveMaxUp(x: [B, 3, 5, 5]) -> [B, 3, 6, 6] { x -> AdaptiveMaxPool2d((6, 6)) }
    /// `linear_rank2`
    LinearRank2(x: [B, 7]) -> [B, 5] { x -> fc: Linear(7 -> 5) }
    /// `linear_rank2_no_bias`
    LinearRank2NoBias(x: [B, 7]) -> [B, 5] { x -> fc: Linear(7 -> 5, bias = false) }
    /// `linear_rank3`
    LinearRank3(x: [B, 3, 7]) -> [B, 3, 5] { x -> fc: Linear(7 -> 5) }
    /// `linear_rank3_no_bias`
    LinearRank3NoBias(x: [B, 3, 7]) -> [B, 3, 5] { x -> fc: Linear(7 -> 5, bias = false) }
    /// `flatten`
    FlattenAll(x: [B, 3, 4, 5]) -> [B, 60] { x -> flatten }
    /// `flatten_2`
    Flatten2(x: [B, 3, 4, 5]) -> [B, 3, 20] { x -> Flatten(start_dim = 2) }
    /// `flatten_1_2`
    Flatten12(x: [B, 3, 4, 5]) -> [B, 12, 5] { x -> Flatten(1, 2) }
    /// `relu`
    ReluNet(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> ReLU }
    /// `sigmoid`
    SigmoidNet(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> Sigmoid }
    /// `tanh`
    TanhNet(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> Tanh }
    /// `leaky_relu`
    LeakyReluDefault(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> leaky_relu }
    /// `leaky_relu_0.2`
    LeakyRelu02(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> LeakyReLU(0.2) }
    /// `gelu`
    GeluErf(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> GELU }
    /// `gelu_tanh`
    GeluTanh(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> GELU(approximate = tanh) }
    /// `silu`
    SiluNet(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> SiLU }
    /// `relu6`
    Relu6Net(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> ReLU6 }
    /// `hardswish`
    HardswishNet(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> Hardswish }
    /// `softmax_1`
    Softmax1(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> Softmax(dim = 1) }
    /// `softmax_last`
    SoftmaxLast(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> softmax(-1) }
    /// `softmax_rank2`
    SoftmaxRank2(x: [B, 10]) -> [B, 10] { x -> Softmax(dim = 1) }
    /// `log_softmax_1`
    LogSoftmax1(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> LogSoftmax(dim = 1) }
    /// `log_softmax_last`
    LogSoftmaxLast(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> log_softmax(dim = -1) }
    /// `bn2d`
    Bn2d(x: [B, 3, 5, 6]) -> [B, 3, 5, 6] { x -> bn: BatchNorm2d }
    /// `bn2d_eps_momentum`
    Bn2dEpsMomentum(x: [B, 3, 5, 6]) -> [B, 3, 5, 6] { x -> bn: BatchNorm2d(3, eps = 1e-3, momentum = 0.3) }
    /// `bn2d_no_affine`
    Bn2dNoAffine(x: [B, 3, 5, 6]) -> [B, 3, 5, 6] { x -> bn: BatchNorm2d(affine = false) }
    /// `bn1d_rank2`
    Bn1dRank2(x: [B, 5]) -> [B, 5] { x -> bn: BatchNorm1d }
    /// `bn1d_rank3`
    Bn1dRank3(x: [B, 3, 5]) -> [B, 3, 5] { x -> bn: BatchNorm1d(3) }
    /// `conv_bn`
    ConvBn(x: [B, 3, 6, 7]) -> [B, 4, 4, 5] { x -> conv: Conv2d(3 -> 4, kernel = 3, bias = false) -> bn: BatchNorm2d }
    /// `linear_bn`
    LinearBn(x: [B, 7]) -> [B, 4] { x -> fc: Linear(7 -> 4) -> bn: BatchNorm1d(4, eps = 1e-3) }

    /// LeNet-5 as in `tests/lenet.rs`.
    LeNet(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(1 -> 6, kernel = 5, padding = 2) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)  : [B, 16, 5, 5]
          -> flatten
          -> fc1: Linear(400 -> 120) -> relu
          -> fc2: Linear(84) -> relu
          -> fc3: Linear(10)
    }
    /// The batch-norm CNN of `tests/cnn.rs`.
    BnCnn(x: [B, 3, 16, 16]) -> [B, 10] {
        x -> conv1: Conv2d(8, kernel = 3, padding = 1, bias = false) -> bn1: BatchNorm2d -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 3, padding = 1) -> bn2: BatchNorm2d(16, eps = 1e-3) -> relu
          -> AdaptiveAvgPool2d(1) -> flatten
          -> fc: Linear(10) -> bn3: BatchNorm1d(10)
    }
    /// Dropout alone, and inside a small network.
    Drop3(x: [B, 1000]) -> [B, 1000] { x -> Dropout(0.3) }
    DropMlp(x: [B, 20]) -> [B, 4] {
        x -> fc1: Linear(16) -> relu -> Dropout(0.5) -> fc2: Linear(4)
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> HashMap<String, Tensor> {
    netdsl::candle::safetensors::load(fixture(name), &Device::Cpu).unwrap()
}

fn fixtures() -> &'static HashMap<String, Tensor> {
    static FIXTURES: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    FIXTURES.get_or_init(|| load("grads.safetensors"))
}

fn get(key: &str) -> &'static Tensor {
    fixtures().get(key).unwrap_or_else(|| {
        panic!("no `{key}` in grads.safetensors: rerun scripts/gen_grad_fixtures.py")
    })
}

/// The tensors under `prefix`, prefix stripped.
fn with_prefix(prefix: &str) -> HashMap<String, Tensor> {
    fixtures()
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
        .collect()
}

/// A state_dict handed to `from_source` by name; every tensor must be used.
struct MapSource(HashMap<String, Tensor>);

impl ParamSource for MapSource {
    fn take(&mut self, spec: &ParamSpec) -> netdsl::Result<Tensor> {
        self.0.remove(spec.name).ok_or_else(|| {
            netdsl::candle::Error::Msg(format!("no `{}` in the state", spec.name)).into()
        })
    }
}

fn max_abs(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Compares one tensor with PyTorch's: max |got - want| <= 1e-4 * max(1,
/// max |want|). Prints the error; a failure is pushed onto `failures`.
fn compare(failures: &mut Vec<String>, what: &str, got: &Tensor, want: &Tensor) {
    if got.dims() != want.dims() {
        failures.push(format!(
            "{what}: shape {:?}, torch {:?}",
            got.dims(),
            want.dims()
        ));
        return;
    }
    if want.dtype() == DType::I64 {
        let (g, w) = (
            got.to_dtype(DType::I64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<i64>()
                .unwrap(),
            want.flatten_all().unwrap().to_vec1::<i64>().unwrap(),
        );
        eprintln!("  {what}: {g:?} (torch {w:?})");
        if g != w {
            failures.push(format!("{what}: {g:?}, torch {w:?}"));
        }
        return;
    }
    let got = got.to_dtype(DType::F32).unwrap();
    let err = max_abs(&got.sub(want).unwrap());
    let tol = 1e-4 * max_abs(want).max(1.0);
    eprintln!("  {what}: max err {err:e} (tolerance {tol:e})");
    if err.is_nan() || err > tol {
        failures.push(format!("{what}: max |netdsl - torch| = {err:e} > {tol:e}"));
    }
}

/// One op case after its network is built and in training mode: runs
/// `loss = sum(forward(x) * R)`, backpropagates, and compares the loss,
/// the input's and every parameter's gradient.
fn check_grads(
    case: &str,
    vars: Vec<(&'static str, Var)>,
    forward: impl FnOnce(&Tensor) -> netdsl::Result<Tensor>,
    failures: &mut Vec<String>,
) {
    let x = Var::from_tensor(get(&format!("{case}.input"))).unwrap();
    let out = forward(x.as_tensor()).unwrap_or_else(|e| panic!("{case}: forward: {e}"));
    let r = get(&format!("{case}.r"));
    assert_eq!(out.dims(), r.dims(), "{case}: output shape");
    let loss = out.mul(r).unwrap().sum_all().unwrap();
    compare(failures, "loss", &loss, get(&format!("{case}.loss")));
    let grads = match loss.backward() {
        Ok(g) => g,
        Err(e) => {
            failures.push(format!("backward: {e}"));
            return;
        }
    };
    match grads.get(x.as_tensor()) {
        Some(g) => compare(
            failures,
            "grad input",
            g,
            get(&format!("{case}.grad_input")),
        ),
        None => failures.push("no gradient for the input".into()),
    }
    check_param_grads(case, &vars, &grads, failures);
}

/// Every variable's gradient vs `<case>.grad.<name>`, and the two name sets equal.
fn check_param_grads(
    case: &str,
    vars: &[(&'static str, Var)],
    grads: &netdsl::candle::backprop::GradStore,
    failures: &mut Vec<String>,
) {
    let mut want = with_prefix(&format!("{case}.grad."));
    for (name, var) in vars {
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
        let mut missing: Vec<_> = want.keys().collect();
        missing.sort();
        failures.push(format!(
            "torch parameters that are no variable: {missing:?}"
        ));
    }
}

/// The buffers after the step vs `<case>.after.<name>`; every one compared.
fn check_buffers(case: &str, tensors: Vec<(&'static str, &Tensor)>, failures: &mut Vec<String>) {
    let mut want = with_prefix(&format!("{case}.after."));
    for (name, t) in tensors {
        if let Some(w) = want.remove(name) {
            compare(failures, &format!("{name} after the step"), t, &w);
        }
    }
    if !want.is_empty() {
        failures.push(format!(
            "buffers not found in the network: {:?}",
            want.keys()
        ));
    }
}

fn finish(case: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{case}: {} mismatch(es) with PyTorch:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

macro_rules! grad_cases {
    ($($(#[$attr:meta])* $test:ident: $net:ident = $case:literal;)*) => {$(
        #[test]
        $(#[$attr])*
        fn $test() {
            let case = $case;
            eprintln!("{case}:");
            let mut source = MapSource(with_prefix(&format!("{case}.state.")));
            let mut net = $net::from_source(&mut source)
                .unwrap_or_else(|e| panic!("{case}: building: {e}"));
            assert!(source.0.is_empty(), "{case}: unused state: {:?}", source.0.keys());
            net.train();
            assert!(net.is_training());
            let vars = net.named_vars().unwrap();
            let mut failures = Vec::new();
            check_grads(case, vars, |x| net.forward(x), &mut failures);
            check_buffers(case, net.named_tensors(), &mut failures);
            finish(case, failures);
        }
    )*
        /// The cases with a test, to compare with the fixture file's.
        const TESTED: &[&str] = &[$($case),*];
    };
}

grad_cases! {
    conv_basic: ConvBasic = "conv_basic";
    conv_stride2_pad1: ConvStride2Pad1 = "conv_stride2_pad1";
    conv_stride2_odd: ConvStride2Odd = "conv_stride2_odd";
    conv_asym_pad: ConvAsymPad = "conv_asym_pad";
    conv_axis_pad: ConvAxisPad = "conv_axis_pad";
    conv_stride_2_1: ConvStride21 = "conv_stride_2_1";
    conv_stride_1_3: ConvStride13 = "conv_stride_1_3";
    conv_dilation: ConvDilation = "conv_dilation";
    conv_groups: ConvGroups = "conv_groups";
    conv_depthwise: ConvDepthwise = "conv_depthwise";
    conv_no_bias: ConvNoBias = "conv_no_bias";
    conv_same_even: ConvSameEven = "conv_same_even";
    conv_kernel_3_5: ConvKernel35 = "conv_kernel_3_5";
    conv_mixed: ConvMixed = "conv_mixed";
    conv_relu: ConvRelu = "conv_relu";
    conv_leaky_relu: ConvLeakyRelu = "conv_leaky_relu";
    conv_gelu: ConvGelu = "conv_gelu";
    conv_gelu_tanh: ConvGeluTanh = "conv_gelu_tanh";
    conv_silu: ConvSilu = "conv_silu";
    conv_sigmoid: ConvSigmoid = "conv_sigmoid";
    conv_bn_relu: ConvBnRelu = "conv_bn_relu";
    conv_transpose: ConvTranspose = "conv_transpose";
    conv_transpose_mixed: ConvTransposeMixed = "conv_transpose_mixed";
    upsample_nearest: UpsampleNearest = "upsample_nearest";
    upsample_bilinear_corners: UpsampleBilinearCorners = "upsample_bilinear_corners";
    upsample_bilinear_x2: UpsampleBilinearX2 = "upsample_bilinear_x2";
    pixel_shuffle: PixelShuffleNet = "pixel_shuffle";
    max_pool_2: MaxPool2 = "max_pool_2";
    max_pool_2_div: MaxPool2Div = "max_pool_2_div";
    max_pool_3_2: MaxPool32 = "max_pool_3_2";
    max_pool_2x3_s12: MaxPool2x3S12 = "max_pool_2x3_s12";
    max_pool_pad: MaxPoolPad = "max_pool_pad";
    max_pool_ceil: MaxPoolCeil = "max_pool_ceil";
    max_pool_dilation: MaxPoolDilation = "max_pool_dilation";
    max_pool_mixed: MaxPoolMixed = "max_pool_mixed";
    avg_pool_2: AvgPool2 = "avg_pool_2";
    avg_pool_2_div: AvgPool2Div = "avg_pool_2_div";
    avg_pool_3_2: AvgPool32 = "avg_pool_3_2";
    avg_pool_2x3_s12: AvgPool2x3S12 = "avg_pool_2x3_s12";
    avg_pool_pad: AvgPoolPad = "avg_pool_pad";
    avg_pool_pad_exclude: AvgPoolPadExclude = "avg_pool_pad_exclude";
    avg_pool_ceil: AvgPoolCeil = "avg_pool_ceil";
    avg_pool_ceil_pad: AvgPoolCeilPad = "avg_pool_ceil_pad";
    avg_pool_ceil_pad_exclude: AvgPoolCeilPadExclude = "avg_pool_ceil_pad_exclude";
    adaptive_avg_1: AdaptiveAvg1 = "adaptive_avg_1";
    adaptive_avg_3x4: AdaptiveAvg3x4 = "adaptive_avg_3x4";
    adaptive_avg_div: AdaptiveAvgDiv = "adaptive_avg_div";
    adaptive_avg_up: AdaptiveAvgUp = "adaptive_avg_up";
    adaptive_max_1: AdaptiveMax1 = "adaptive_max_1";
    adaptive_max_3x4: AdaptiveMax3x4 = "adaptive_max_3x4";
    adaptive_max_div: AdaptiveMaxDiv = "adaptive_max_div";
    adaptive_max_up: AdaptiveMaxUp = "adaptive_max_up";
    linear_rank2: LinearRank2 = "linear_rank2";
    linear_rank2_no_bias: LinearRank2NoBias = "linear_rank2_no_bias";
    linear_rank3: LinearRank3 = "linear_rank3";
    linear_rank3_no_bias: LinearRank3NoBias = "linear_rank3_no_bias";
    flatten: FlattenAll = "flatten";
    flatten_2: Flatten2 = "flatten_2";
    flatten_1_2: Flatten12 = "flatten_1_2";
    relu: ReluNet = "relu";
    sigmoid: SigmoidNet = "sigmoid";
    tanh: TanhNet = "tanh";
    leaky_relu: LeakyReluDefault = "leaky_relu";
    leaky_relu_02: LeakyRelu02 = "leaky_relu_0.2";
    gelu: GeluErf = "gelu";
    gelu_tanh: GeluTanh = "gelu_tanh";
    silu: SiluNet = "silu";
    relu6: Relu6Net = "relu6";
    hardswish: HardswishNet = "hardswish";
    softmax_1: Softmax1 = "softmax_1";
    softmax_last: SoftmaxLast = "softmax_last";
    softmax_rank2: SoftmaxRank2 = "softmax_rank2";
    log_softmax_1: LogSoftmax1 = "log_softmax_1";
    log_softmax_last: LogSoftmaxLast = "log_softmax_last";
    bn2d: Bn2d = "bn2d";
    bn2d_eps_momentum: Bn2dEpsMomentum = "bn2d_eps_momentum";
    bn2d_no_affine: Bn2dNoAffine = "bn2d_no_affine";
    bn1d_rank2: Bn1dRank2 = "bn1d_rank2";
    bn1d_rank3: Bn1dRank3 = "bn1d_rank3";
    conv_bn: ConvBn = "conv_bn";
    linear_bn: LinearBn = "linear_bn";
}

/// Every op case in the fixture file has a test above, and the reverse.
#[test]
fn every_fixture_case_is_tested() {
    let mut in_file: Vec<&str> = fixtures()
        .keys()
        .filter_map(|k| k.strip_suffix(".r"))
        .collect();
    in_file.sort_unstable();
    let mut tested = TESTED.to_vec();
    tested.sort_unstable();
    assert_eq!(in_file, tested);
}

/// LeNet with `tests/fixtures/lenet.safetensors`, one training step:
/// cross-entropy (mean) on fixed targets; the loss and every parameter's
/// gradient vs PyTorch. fc1.weight's gradient is stored as the
/// factors of PyTorch's linear backward, `G^T A` (see the generator).
#[test]
fn lenet_training_step_matches_pytorch() {
    let mut net = LeNet::load(fixture("lenet.safetensors"), &Device::Cpu).unwrap();
    net.train();
    let vars = net.named_vars().unwrap();
    assert_eq!(vars.len(), 10);
    let input = &load("lenet_io.safetensors")["input"];
    let targets = get("lenet.targets").to_dtype(DType::U32).unwrap();
    let logits = net.forward(input).unwrap();
    let loss = netdsl::candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let mut failures = Vec::new();
    compare(&mut failures, "loss", &loss, get("lenet.loss"));
    let fc1 = get("lenet.fc1_grad_output")
        .t()
        .unwrap()
        .matmul(get("lenet.fc1_input"))
        .unwrap();
    let (fc1_w, rest): (Vec<_>, Vec<_>) = vars.into_iter().partition(|(n, _)| *n == "fc1.weight");
    match grads.get(fc1_w[0].1.as_tensor()) {
        Some(g) => compare(&mut failures, "grad fc1.weight", g, &fc1),
        None => failures.push("no gradient for fc1.weight".into()),
    }
    check_param_grads("lenet", &rest, &grads, &mut failures);
    finish("lenet", failures);
}

/// The batch-norm CNN of `tests/cnn.rs` with `bn_cnn.safetensors`, one
/// train-mode step (batch statistics, cross-entropy): the loss, every
/// parameter's gradient, and the running statistics and
/// `num_batches_tracked` after the step vs PyTorch's `model.train()`.
#[test]
fn bn_cnn_training_step_matches_pytorch() {
    let state: HashMap<String, Tensor> = load("bn_cnn.safetensors")
        .into_iter()
        .filter(|(k, _)| k != "input" && k != "output")
        .collect();
    let mut net = BnCnn::from_source(&mut MapSource(state)).unwrap();
    net.train();
    let vars = net.named_vars().unwrap();
    assert_eq!(vars.len(), 11);
    let targets = get("bn_cnn.targets").to_dtype(DType::U32).unwrap();
    let logits = net.forward(get("bn_cnn.input")).unwrap();
    let loss = netdsl::candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let mut failures = Vec::new();
    compare(&mut failures, "loss", &loss, get("bn_cnn.loss"));
    check_param_grads("bn_cnn", &vars, &grads, &mut failures);
    check_buffers("bn_cnn", net.named_tensors(), &mut failures);
    finish("bn_cnn", failures);
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Dropout in training: about `p` of the values are zeroed, the others
/// scaled by `1 / (1 - p)`; the same seed gives the same mask, another seed
/// or the next call another one; `eval()` is the identity.
#[test]
fn dropout_in_training_is_seeded_scaled_and_about_p() {
    let x = Tensor::ones((10, 1000), DType::F32, &Device::Cpu).unwrap();
    let mut net = Drop3::new_seeded(0, &Device::Cpu).unwrap();
    assert!(!net.is_training(), "networks start in eval mode");
    assert_eq!(
        values(&net.forward(&x).unwrap()),
        values(&x),
        "eval before train"
    );
    net.train();
    net.set_seed(11);
    let a = values(&net.forward(&x).unwrap());
    let zeros = a.iter().filter(|v| **v == 0.0).count() as f64 / a.len() as f64;
    // 10,000 draws: the standard deviation of the fraction is 0.0046.
    assert!(
        (zeros - 0.3).abs() < 0.02,
        "fraction zeroed {zeros}, p = 0.3"
    );
    let scale = 1.0 / 0.7_f32;
    assert!(
        a.iter()
            .all(|v| *v == 0.0 || (v - scale).abs() <= 1e-6 * scale),
        "survivors must be scaled by 1 / (1 - p)"
    );
    let next = values(&net.forward(&x).unwrap());
    assert_ne!(a, next, "the next call draws a new mask");
    net.set_seed(11);
    assert_eq!(values(&net.forward(&x).unwrap()), a, "same seed, same mask");
    net.set_seed(12);
    assert_ne!(
        values(&net.forward(&x).unwrap()),
        a,
        "another seed, another mask"
    );
    // A network built with the same seed draws the same masks.
    let mut twin = Drop3::new_seeded(0, &Device::Cpu).unwrap();
    twin.train();
    twin.set_seed(11);
    assert_eq!(values(&twin.forward(&x).unwrap()), a);
    net.eval();
    assert_eq!(
        values(&net.forward(&x).unwrap()),
        values(&x),
        "eval is the identity"
    );
}

/// The gradient through a live dropout is its mask: zero where dropped,
/// `1 / (1 - p)` elsewhere, the same mask as the forward used; with
/// parameters before and after it.
#[test]
fn dropout_gradient_is_its_mask() {
    let dev = Device::Cpu;
    let mut net = Drop3::new_seeded(3, &dev).unwrap();
    net.train();
    let x0 = (Tensor::arange(0f32, 2000.0, &dev)
        .unwrap()
        .reshape((2, 1000))
        .unwrap()
        * 0.01)
        .unwrap()
        .affine(1.0, 0.5)
        .unwrap();
    let x = Var::from_tensor(&x0).unwrap();
    let y = net.forward(x.as_tensor()).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let g = values(grads.get(x.as_tensor()).unwrap());
    let (y, x0) = (values(&y), values(&x0));
    let scale = 1.0 / 0.7_f32;
    for i in 0..g.len() {
        assert!(
            g[i] == 0.0 || (g[i] - scale).abs() <= 1e-6 * scale,
            "grad {}",
            g[i]
        );
        assert!(
            (y[i] - x0[i] * g[i]).abs() <= 1e-5 * x0[i].abs(),
            "y = x * mask at {i}"
        );
    }

    // In a network: dropped hidden units pass no gradient to fc2's weight columns.
    let mut mlp = DropMlp::new_seeded(5, &dev).unwrap();
    mlp.train();
    let vars = mlp.named_vars().unwrap();
    let x = Tensor::arange(0f32, 40.0, &dev)
        .unwrap()
        .reshape((2, 20))
        .unwrap();
    let x = (x * 0.05).unwrap().sin().unwrap();
    let loss = mlp.forward(&x).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for (name, v) in &vars {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert!(max_abs(g) > 0.0, "{name}: zero gradient");
    }
    mlp.eval();
    let a = mlp.forward(&x).unwrap();
    let b = mlp.forward(&x).unwrap();
    assert_eq!(values(&a), values(&b), "eval is deterministic");
}
