//! Numerical parity with PyTorch of every Conv2d, pooling, flatten, linear
//! and activation option, one small network per case.
//!
//! The fixtures come from `gen_ops` in `scripts/gen_fixtures.py`: one file,
//! `tests/fixtures/ops.safetensors`, holding for each case `<case>.input`,
//! `<case>.output` and the case module's state_dict under `<case>.`. Each
//! network below mirrors the torch module of the case of the same name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use netdsl::candle::{Device, Tensor};
use netdsl::{network, ParamSource, ParamSpec};

network! {
    // ---- Conv2d ------------------------------------------------------------
    /// torch: `F.pad(x, (1, 2, 0, 3))` then `Conv2d(3, 4, 3)`.
    ConvAsymPad(x: [B, 3, 9, 11]) -> [B, 4, 10, 12] {
        x -> conv: Conv2d(3 -> 4, kernel = 3, padding = (1, 2, 0, 3))
    }
    ConvAxisPad(x: [B, 3, 9, 11]) -> [B, 4, 9, 13] {
        x -> conv: Conv2d(3 -> 4, kernel = 3, padding = (1, 2))
    }
    ConvStride21(x: [B, 3, 9, 11]) -> [B, 4, 5, 11] {
        x -> conv: Conv2d(3 -> 4, kernel = 3, stride = (2, 1), padding = 1)
    }
    ConvStride13(x: [B, 3, 9, 11]) -> [B, 4, 7, 3] {
        x -> conv: Conv2d(3 -> 4, kernel = 3, stride = (1, 3))
    }
    ConvDilation(x: [B, 3, 9, 11]) -> [B, 4, 7, 9] {
        x -> conv: Conv2d(3 -> 4, kernel = 3, dilation = 2, padding = 1)
    }
    ConvGroups(x: [B, 4, 9, 11]) -> [B, 6, 9, 11] {
        x -> conv: Conv2d(4 -> 6, kernel = 3, groups = 2, padding = 1)
    }
    ConvDepthwise(x: [B, 4, 9, 11]) -> [B, 4, 7, 9] {
        x -> conv: Conv2d(4 -> 4, kernel = 3, groups = 4)
    }
    ConvDepthwiseMult(x: [B, 4, 9, 11]) -> [B, 8, 9, 11] {
        x -> conv: Conv2d(4 -> 8, kernel = 3, groups = 4, padding = 1)
    }
    ConvSameOdd(x: [B, 3, 9, 11]) -> [B, 4, 9, 11] {
        x -> conv: Conv2d(3 -> 4, kernel = 3, padding = same)
    }
    /// Even kernel: PyTorch puts the extra row and column of padding last.
    ConvSameEven(x: [B, 3, 9, 11]) -> [B, 4, 9, 11] {
        x -> conv: Conv2d(3 -> 4, kernel = 4, padding = same)
    }
    ConvSameEvenRect(x: [B, 3, 9, 11]) -> [B, 4, 9, 11] {
        x -> conv: Conv2d(3 -> 4, kernel = (2, 4), padding = same)
    }
    ConvSameDilated(x: [B, 3, 9, 11]) -> [B, 4, 9, 11] {
        x -> conv: Conv2d(3 -> 4, kernel = 4, dilation = 2, padding = same)
    }
    ConvKernel35(x: [B, 3, 9, 11]) -> [B, 4, 7, 7] {
        x -> conv: Conv2d(3 -> 4, kernel = (3, 5))
    }
    ConvNoBias(x: [B, 3, 9, 11]) -> [B, 4, 7, 9] {
        x -> conv: Conv2d(3 -> 4, kernel = 3, bias = false)
    }
    ConvStride2Odd(x: [B, 3, 9, 11]) -> [B, 4, 4, 5] {
        x -> conv: Conv2d(3 -> 4, kernel = 3, stride = 2)
    }
    /// torch: `F.pad(x, (2, 0, 1, 1))` then
    /// `Conv2d(4, 6, (3, 2), stride=(2, 3), dilation=2, groups=2)`.
    ConvMixed(x: [B, 4, 9, 11]) -> [B, 6, 4, 4] {
        x -> conv: Conv2d(4 -> 6, kernel = (3, 2), stride = (2, 3), padding = (2, 0, 1, 1),
                          dilation = 2, groups = 2)
    }
    ConvChain(x: [B, 3, 9, 11]) -> [B, 5, 8, 5] {
        x -> c1: Conv2d(4, kernel = 3, padding = 1) -> relu
          -> c2: Conv2d(5, kernel = (2, 3), stride = (1, 2), bias = false) -> tanh
    }

    // ---- pooling (floor mode) ---------------------------------------------
    MaxPool32(x: [B, 3, 9, 11]) -> [B, 3, 4, 5] {
        x -> MaxPool2d(kernel = 3, stride = 2)
    }
    AvgPool32(x: [B, 3, 9, 11]) -> [B, 3, 4, 5] {
        x -> AvgPool2d(kernel = 3, stride = 2)
    }
    MaxPool2x3(x: [B, 3, 9, 11]) -> [B, 3, 4, 3] {
        x -> MaxPool2d((2, 3))
    }
    AvgPool2x3(x: [B, 3, 9, 11]) -> [B, 3, 4, 3] {
        x -> avg_pool((2, 3))
    }
    MaxPool2x3S12(x: [B, 3, 9, 11]) -> [B, 3, 8, 5] {
        x -> max_pool(kernel = (2, 3), stride = (1, 2))
    }
    AvgPool2x3S12(x: [B, 3, 9, 11]) -> [B, 3, 8, 5] {
        x -> AvgPool2d(kernel = (2, 3), stride = (1, 2))
    }

    // ---- Linear and Flatten -----------------------------------------------
    LinearRank3(x: [B, T, 7]) -> [B, T, 6] {
        x -> fc: Linear(7 -> 6)
    }
    LinearRank3NoBias(x: [B, T, 7]) -> [B, T, 6] {
        x -> fc: Linear(6, bias = false)
    }
    Flatten2(x: [B, 3, 4, 5]) -> [B, 3, 20] {
        x -> Flatten(start_dim = 2)
    }
    Flatten2Linear(x: [B, 3, 4, 5]) -> [B, 3, 6] {
        x -> flatten(start_dim = 2) : [B, 3, 20] -> fc: Linear(20 -> 6)
    }

    // ---- activations on a 4-D tensor --------------------------------------
    SigmoidNet(x: [B, 3, 9, 11]) -> [B, 3, 9, 11] { x -> Sigmoid }
    TanhNet(x: [B, 3, 9, 11]) -> [B, 3, 9, 11] { x -> Tanh }
    ReluNet(x: [B, 3, 9, 11]) -> [B, 3, 9, 11] { x -> ReLU }
    Softmax1(x: [B, 3, 9, 11]) -> [B, 3, 9, 11] { x -> Softmax(dim = 1) }
    LogSoftmaxLast(x: [B, 3, 9, 11]) -> [B, 3, 9, 11] { x -> LogSoftmax(dim = -1) }
}

fn fixtures() -> &'static HashMap<String, Tensor> {
    static FIXTURES: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops.safetensors");
        netdsl::candle::safetensors::load(path, &Device::Cpu).unwrap()
    })
}

/// One case's tensors, prefix stripped: `input`, `output` and its
/// state_dict, handed to a network's `from_source` by name.
struct CaseParams {
    case: &'static str,
    params: HashMap<String, Tensor>,
}

impl ParamSource for CaseParams {
    fn take(&mut self, spec: &ParamSpec) -> netdsl::Result<Tensor> {
        let t = self.params.remove(spec.name).ok_or_else(|| {
            netdsl::candle::Error::Msg(format!(
                "case `{}`: the fixture has no `{}`",
                self.case, spec.name
            ))
        })?;
        if t.dims() != spec.shape || t.dtype() != spec.dtype {
            return Err(netdsl::candle::Error::Msg(format!(
                "case `{}`: `{}` is {:?} {:?} in the fixture, the network expects {:?} {:?}",
                self.case,
                spec.name,
                t.dims(),
                t.dtype(),
                spec.shape,
                spec.dtype
            ))
            .into());
        }
        Ok(t)
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

/// Builds the case's network from its fixture weights, runs it on the
/// fixture input and compares with torch's output:
/// max |netdsl - torch| <= 1e-4 * max(1, max |torch|).
fn check<N>(
    case: &'static str,
    build: impl FnOnce(&mut CaseParams) -> netdsl::Result<N>,
    forward: impl FnOnce(&N, &Tensor) -> netdsl::Result<Tensor>,
) {
    let prefix = format!("{case}.");
    let mut params: HashMap<String, Tensor> = fixtures()
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.clone())))
        .collect();
    let input = params
        .remove("input")
        .unwrap_or_else(|| panic!("no fixture for case `{case}`: rerun scripts/gen_fixtures.py"));
    let want = params.remove("output").unwrap();
    let mut source = CaseParams { case, params };
    let net = build(&mut source).unwrap_or_else(|e| panic!("{case}: building: {e}"));
    let unused: Vec<&String> = source.params.keys().collect();
    assert!(
        unused.is_empty(),
        "{case}: fixture tensors not used by the network: {unused:?}"
    );
    let got = forward(&net, &input).unwrap_or_else(|e| panic!("{case}: forward: {e}"));
    assert_eq!(got.dims(), want.dims(), "{case}: output shape");
    let err = max_abs(&got.sub(&want).unwrap());
    let tol = 1e-4 * max_abs(&want).max(1.0);
    eprintln!("{case}: max |netdsl - torch| = {err:e} (tolerance {tol:e})");
    assert!(
        err <= tol,
        "{case}: max |netdsl - torch| = {err:e} > {tol:e}"
    );
}

macro_rules! parity {
    ($($(#[$attr:meta])* $test:ident: $net:ident = $case:literal;)*) => {$(
        #[test]
        $(#[$attr])*
        fn $test() {
            check($case, |s| $net::from_source(s), |n, x| n.forward(x));
        }
    )*
        /// The cases with a test, to compare with the fixture file's.
        const TESTED: &[&str] = &[$($case),*];
    };
}

parity! {
    conv_asym_pad: ConvAsymPad = "conv_asym_pad";
    conv_axis_pad: ConvAxisPad = "conv_axis_pad";
    conv_stride_2_1: ConvStride21 = "conv_stride_2_1";
    conv_stride_1_3: ConvStride13 = "conv_stride_1_3";
    conv_dilation: ConvDilation = "conv_dilation";
    conv_groups: ConvGroups = "conv_groups";
    conv_depthwise: ConvDepthwise = "conv_depthwise";
    conv_depthwise_mult: ConvDepthwiseMult = "conv_depthwise_mult";
    conv_same_odd: ConvSameOdd = "conv_same_odd";
    conv_same_even: ConvSameEven = "conv_same_even";
    conv_same_even_rect: ConvSameEvenRect = "conv_same_even_rect";
    conv_same_dilated: ConvSameDilated = "conv_same_dilated";
    conv_kernel_3_5: ConvKernel35 = "conv_kernel_3_5";
    conv_no_bias: ConvNoBias = "conv_no_bias";
    conv_stride_2_odd: ConvStride2Odd = "conv_stride_2_odd";
    conv_mixed: ConvMixed = "conv_mixed";
    conv_chain: ConvChain = "conv_chain";
    max_pool_3_2: MaxPool32 = "max_pool_3_2";
    avg_pool_3_2: AvgPool32 = "avg_pool_3_2";
    max_pool_2x3: MaxPool2x3 = "max_pool_2x3";
    avg_pool_2x3: AvgPool2x3 = "avg_pool_2x3";
    max_pool_2x3_s12: MaxPool2x3S12 = "max_pool_2x3_s12";
    avg_pool_2x3_s12: AvgPool2x3S12 = "avg_pool_2x3_s12";
    linear_rank3: LinearRank3 = "linear_rank3";
    linear_rank3_no_bias: LinearRank3NoBias = "linear_rank3_no_bias";
    flatten_2: Flatten2 = "flatten_2";
    flatten_2_linear: Flatten2Linear = "flatten_2_linear";
    sigmoid: SigmoidNet = "sigmoid";
    tanh: TanhNet = "tanh";
    relu: ReluNet = "relu";
    softmax_1: Softmax1 = "softmax_1";
    log_softmax_last: LogSoftmaxLast = "log_softmax_last";
}

/// Every case in the fixture file has a test above, and the reverse.
#[test]
fn every_fixture_case_is_tested() {
    let mut in_file: Vec<&str> = fixtures()
        .keys()
        .filter_map(|k| k.strip_suffix(".input"))
        .collect();
    in_file.sort_unstable();
    let mut tested = TESTED.to_vec();
    tested.sort_unstable();
    assert_eq!(in_file, tested);
}
