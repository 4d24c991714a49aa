//! `LayerNorm` and `RMSNorm`: each sample normalised over its trailing dims
//! (the normalised shape), as `torch.nn.LayerNorm` and `torch.nn.RMSNorm`,
//! with a learned scale (`weight`) and, for layer norm, shift (`bias`) of
//! the normalised shape. Differentiable in training (the runtime's own
//! kernel; candle-nn's fused one stops gradients).

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use crate::ast::{Layer, Value};
use crate::emit::usize_lit;
use crate::infer::FailKind;
use crate::infer::{Step, StepResult};
use crate::lower::{Holder, InitIr, StepOp};
use crate::ops::args::Args;
use crate::ops::{Alias, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::fmt_shape;

#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// `false`: `RMSNorm` (no centring, no bias).
    pub centre: bool,
    /// The normalised trailing dims as written; `None`: the last dim.
    pub shape: Option<Spanned<Vec<u64>>>,
    pub eps: f64,
    pub affine: bool,
    pub bias: bool,
}

impl LayerNorm {
    fn op(&self) -> &'static str {
        if self.centre {
            "LayerNorm"
        } else {
            "RMSNorm"
        }
    }

    /// The number of trailing dims normalised.
    pub fn dims(&self) -> usize {
        self.shape.as_ref().map_or(1, |s| s.value.len())
    }

    /// Parameters exist (a field, a name needed).
    pub fn has_params(&self) -> bool {
        self.affine
    }
}

const SHAPE: ArgSpec = ArgSpec::new(
    "normalized_shape",
    ArgKind::Shape,
    Some("the input's last dim"),
    "the trailing dims normalised over, `E` or `(T, E)`; checked against the input",
);

const AFFINE: ArgSpec = ArgSpec::new(
    "elementwise_affine",
    ArgKind::Bool,
    Some("true"),
    "learn a scale `weight` (and a shift `bias`) of the normalised shape",
)
.aka(&["affine"]);

pub const LAYER_NORM: OpDef = OpDef {
    name: "LayerNorm",
    spellings: &["LayerNorm", "layer_norm"],
    aliases: &[Alias::new("LayerNormalization", "Keras", "LayerNorm")],
    positional: &["normalized_shape"],
    args: &[
        SHAPE,
        ArgSpec::new(
            "eps",
            ArgKind::Number,
            Some("1e-5"),
            "added to the variance before the square root; > 0",
        ),
        AFFINE,
        ArgSpec::new(
            "bias",
            ArgKind::Bool,
            Some("true"),
            "learn the shift `bias` (with `elementwise_affine`)",
        ),
    ],
    resolve: resolve_layer_norm,
};

pub const RMS_NORM: OpDef = OpDef {
    name: "RMSNorm",
    spellings: &["RMSNorm", "rms_norm"],
    aliases: &[],
    positional: &["normalized_shape"],
    args: &[
        SHAPE,
        ArgSpec::new(
            "eps",
            ArgKind::Number,
            Some("1.1920929e-7"),
            "added to the mean square before the square root (PyTorch's default: float32's machine epsilon); > 0",
        ),
        AFFINE,
    ],
    resolve: resolve_rms_norm,
};

fn resolve_layer_norm(a: &Args, _layer: &Layer) -> Option<Op> {
    resolve_norm(a, true, 1e-5)
}

fn resolve_rms_norm(a: &Args, _layer: &Layer) -> Option<Op> {
    resolve_norm(a, false, f32::EPSILON as f64)
}

fn resolve_norm(a: &Args, centre: bool, eps: f64) -> Option<Op> {
    let shape = normalized_shape(a);
    let eps = a.float("eps", eps, 0.0, f64::INFINITY, false);
    let affine = a.boolean("elementwise_affine", true);
    let bias = if centre {
        a.boolean("bias", true)
    } else {
        Some(false)
    };
    Some(Op::LayerNorm(LayerNorm {
        centre,
        shape: shape?,
        eps: eps?.value,
        affine: affine?,
        bias: bias?,
    }))
}

/// `E` or `(T, E)` (any number of positive sizes); `Some(None)` when absent.
fn normalized_shape(a: &Args) -> Option<Option<Spanned<Vec<u64>>>> {
    let key = "normalized_shape";
    let Some(v) = a.get(key) else {
        return Some(None);
    };
    let value = match v {
        Value::Tuple(items, _) if !items.is_empty() => {
            let sizes: Vec<Option<u64>> = items.iter().map(|i| a.uint_value(key, 1, i)).collect();
            sizes.into_iter().collect::<Option<Vec<u64>>>()?
        }
        Value::Int(..) => vec![a.uint_value(key, 1, v)?],
        other => {
            a.wrong_kind(key, "a size `E` or a tuple of sizes `(T, E)`", other);
            return None;
        }
    };
    Some(Some(Spanned {
        value,
        span: v.span(),
        written: true,
    }))
}

/// The shape goes through; its trailing dims must be known and equal the
/// normalised shape when it is written.
pub fn infer_layer_norm(cx: &Step, ln: &LayerNorm) -> StepResult {
    let op = ln.op();
    let n = ln.dims();
    if cx.input.len() < n + 1 {
        return Err(cx.fail(
            FailKind::Other,
            cx.layer.span,
            format!(
                "`{}` ({op}) normalises the last {n} dim{} of each sample, but {} gives {} (rank {})",
                cx.name(),
                if n == 1 { "" } else { "s" },
                cx.prev,
                fmt_shape(cx.input),
                cx.input.len()
            ),
        ));
    }
    let first = cx.input.len() - n;
    let mut got = Vec::with_capacity(n);
    for axis in first..cx.input.len() {
        got.push(cx.known(axis, "normalised size")?);
    }
    if let Some(written) = &ln.shape {
        if written.value != got {
            let text = |s: &[u64]| match s {
                [one] => one.to_string(),
                _ => format!(
                    "({})",
                    s.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                ),
            };
            let mut f = cx.fail(
                FailKind::Mismatch,
                written.span,
                format!(
                    "`{}` normalises over {}, but the last {} of {} ({}) {} {}",
                    cx.name(),
                    text(&written.value),
                    if n == 1 {
                        "dim".to_string()
                    } else {
                        format!("{n} dims")
                    },
                    cx.prev,
                    fmt_shape(cx.input),
                    if n == 1 { "is" } else { "are" },
                    text(&got)
                ),
            );
            f.help.push(format!(
                "write `{op}({})`, or `{op}` to normalise over the last dim",
                text(&got)
            ));
            return Err(f);
        }
    }
    Ok((cx.input.clone(), None))
}

/// `weight` (ones) and `bias` (zeros), both of the normalised shape.
pub fn lower_layer_norm(cx: &LowerCx, ln: &LayerNorm) -> Lowered {
    let n = ln.dims();
    let shape: Vec<u64> = cx.input[cx.input.len().saturating_sub(n)..]
        .iter()
        .map(|d| d.known().unwrap_or(0))
        .collect();
    let mut desc = format!(
        "{}({}",
        ln.op(),
        match shape.as_slice() {
            [one] => one.to_string(),
            s => format!(
                "({})",
                s.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    );
    let default_eps = if ln.centre { 1e-5 } else { f32::EPSILON as f64 };
    if ln.eps != default_eps {
        desc += &format!(", eps {}", ln.eps);
    }
    if !ln.affine {
        desc += ", no affine";
    } else if ln.centre && !ln.bias {
        desc += ", no bias";
    }
    desc += ")";
    let step = StepOp::LayerNorm {
        field: cx.ident.clone(),
        centre: ln.centre,
        dims: n,
        eps: ln.eps,
        affine: ln.affine,
        bias: ln.bias,
    };
    let field = ln.affine.then(|| {
        let mut params = vec![cx.param("weight", shape.clone(), InitIr::Ones)];
        if ln.bias {
            params.push(cx.param("bias", shape.clone(), InitIr::Zeros));
        }
        let absent = if ln.centre && !ln.bias {
            vec!["bias"]
        } else {
            vec![]
        };
        let holder = if ln.centre {
            "LayerNormParams"
        } else {
            "RmsNormParams"
        };
        cx.field(Holder::new(holder), params, absent)
    });
    (desc, step, field, Macs::per_sample(cx.output, 1))
}

/// The runtime's `layer_norm` / `rms_norm` with the parameters as `forward`
/// uses them (tracked in training, detached otherwise).
pub fn emit_layer_norm(
    e: &EmitCx,
    field: &Ident,
    centre: bool,
    dims: usize,
    eps: f64,
    affine: bool,
    bias: bool,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, training) = (e.src, e.x, &e.training);
    let f = e.env.field(field);
    let eps = Literal::f64_unsuffixed(eps);
    let dims = usize_lit(dims as u64);
    let weight = if affine {
        quote!(::core::option::Option::Some(&#p::param(&#f.weight, #training)))
    } else {
        quote!(::core::option::Option::None)
    };
    if centre {
        let bias = if affine && bias {
            quote!(::core::option::Option::Some(&#p::param(&#f.bias, #training)))
        } else {
            quote!(::core::option::Option::None)
        };
        quote!(let #x = #p::layer_norm(&#src, #weight, #bias, #dims, #eps)?;)
    } else {
        quote!(let #x = #p::rms_norm(&#src, #weight, #dims, #eps)?;)
    }
}
