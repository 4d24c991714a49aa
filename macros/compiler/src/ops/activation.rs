//! Element-wise activations (`ReLU`, `Sigmoid`, `Tanh`, `LeakyReLU`,
//! `GELU`, `SiLU`, `ReLU6`, `Hardswish`) and the normalising ones along a
//! dim (`Softmax`, `LogSoftmax`). None has parameters; all keep the shape.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use crate::ast::{Layer, Value};
use crate::emit::usize_lit;
use crate::infer::FailKind;
use crate::infer::{Step, StepResult};
use crate::lower::StepOp;
use crate::ops::args::Args;
use crate::ops::{Alias, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, normalize_dim};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    Sigmoid,
    Tanh,
    LeakyRelu(f64),
    /// Exact (erf) form, or PyTorch's `approximate = 'tanh'`.
    Gelu {
        tanh: bool,
    },
    Silu,
    Relu6,
    Hardswish,
}

impl Activation {
    /// Monotone non-decreasing: commutes with max pooling.
    pub fn is_monotone(self) -> bool {
        match self {
            Activation::Relu | Activation::Sigmoid | Activation::Tanh | Activation::Relu6 => true,
            Activation::LeakyRelu(slope) => slope >= 0.0,
            Activation::Gelu { .. } | Activation::Silu | Activation::Hardswish => false,
        }
    }

    /// How the summary names it.
    pub fn summary(self) -> String {
        match self {
            Activation::Relu => "ReLU".to_string(),
            Activation::Sigmoid => "Sigmoid".to_string(),
            Activation::Tanh => "Tanh".to_string(),
            Activation::LeakyRelu(s) => format!("LeakyReLU({s})"),
            Activation::Gelu { tanh: false } => "GELU".to_string(),
            Activation::Gelu { tanh: true } => "GELU(tanh)".to_string(),
            Activation::Silu => "SiLU".to_string(),
            Activation::Relu6 => "ReLU6".to_string(),
            Activation::Hardswish => "Hardswish".to_string(),
        }
    }
}

/// `inplace` is accepted for PyTorch familiarity and has no effect (candle
/// has no in-place ops).
const INPLACE: ArgSpec = ArgSpec::new(
    "inplace",
    ArgKind::Bool,
    Some("false"),
    "accepted for PyTorch familiarity; no effect",
);

const DIM: &[ArgSpec] = &[ArgSpec::new(
    "dim",
    ArgKind::Int,
    None,
    "the dim normalised over; negative counts from the end",
)];

pub const RELU: OpDef = parameter_free("ReLU", &["ReLU", "relu"], resolve_relu);
pub const SIGMOID: OpDef = parameter_free("Sigmoid", &["Sigmoid", "sigmoid"], resolve_sigmoid);
pub const TANH: OpDef = parameter_free("Tanh", &["Tanh", "tanh"], resolve_tanh);
pub const SILU: OpDef = OpDef {
    aliases: &[Alias::new("Swish", "Keras and TensorFlow", "SiLU")],
    ..parameter_free("SiLU", &["SiLU", "silu"], resolve_silu)
};
pub const RELU6: OpDef = parameter_free("ReLU6", &["ReLU6", "relu6"], resolve_relu6);
pub const HARDSWISH: OpDef =
    parameter_free("Hardswish", &["Hardswish", "hardswish"], resolve_hardswish);

pub const LEAKY_RELU: OpDef = OpDef {
    name: "LeakyReLU",
    spellings: &["LeakyReLU", "leaky_relu"],
    aliases: &[],
    positional: &["negative_slope"],
    args: &[
        ArgSpec::new(
            "negative_slope",
            ArgKind::Number,
            Some("0.01"),
            "the slope for negative inputs",
        ),
        INPLACE,
    ],
    resolve: resolve_leaky_relu,
};

pub const GELU: OpDef = OpDef {
    name: "GELU",
    spellings: &["GELU", "gelu"],
    aliases: &[],
    positional: &["approximate"],
    args: &[ArgSpec::new(
        "approximate",
        ArgKind::Choice(&["none", "tanh"]),
        Some("none"),
        "`none`: the exact form with erf; `tanh`: PyTorch's tanh approximation",
    )],
    resolve: resolve_gelu,
};

pub const SOFTMAX: OpDef = softmax("Softmax", &["Softmax", "softmax"], resolve_softmax);
pub const LOG_SOFTMAX: OpDef = softmax(
    "LogSoftmax",
    &["LogSoftmax", "log_softmax"],
    resolve_log_softmax,
);

const fn parameter_free(
    name: &'static str,
    spellings: &'static [&'static str],
    resolve: fn(&Args, &Layer) -> Option<Op>,
) -> OpDef {
    OpDef {
        name,
        spellings,
        aliases: &[],
        positional: &[],
        args: &[INPLACE],
        resolve,
    }
}

const fn softmax(
    name: &'static str,
    spellings: &'static [&'static str],
    resolve: fn(&Args, &Layer) -> Option<Op>,
) -> OpDef {
    OpDef {
        name,
        spellings,
        aliases: &[],
        positional: &["dim"],
        args: DIM,
        resolve,
    }
}

fn plain(a: &Args, act: Activation) -> Option<Op> {
    a.boolean("inplace", false)?;
    Some(Op::Act(act))
}

fn resolve_relu(a: &Args, _layer: &Layer) -> Option<Op> {
    plain(a, Activation::Relu)
}

fn resolve_sigmoid(a: &Args, _layer: &Layer) -> Option<Op> {
    plain(a, Activation::Sigmoid)
}

fn resolve_tanh(a: &Args, _layer: &Layer) -> Option<Op> {
    plain(a, Activation::Tanh)
}

fn resolve_silu(a: &Args, _layer: &Layer) -> Option<Op> {
    plain(a, Activation::Silu)
}

fn resolve_relu6(a: &Args, _layer: &Layer) -> Option<Op> {
    plain(a, Activation::Relu6)
}

fn resolve_hardswish(a: &Args, _layer: &Layer) -> Option<Op> {
    plain(a, Activation::Hardswish)
}

fn resolve_leaky_relu(a: &Args, _layer: &Layer) -> Option<Op> {
    let slope = a.float(
        "negative_slope",
        0.01,
        f64::NEG_INFINITY,
        f64::INFINITY,
        true,
    );
    a.boolean("inplace", false)?;
    Some(Op::Act(Activation::LeakyRelu(slope?.value)))
}

fn resolve_gelu(a: &Args, _layer: &Layer) -> Option<Op> {
    let tanh = match a.get("approximate") {
        None => false,
        Some(Value::Ident(i)) if i == "none" => false,
        Some(Value::Ident(i)) if i == "tanh" => true,
        Some(other) => {
            a.cx.error(
                other.span(),
                format!(
                    "`approximate` of `GELU` is `none` (exact, erf) or `tanh`, found `{other}`\n\
                     help: write {} for the fast approximation, or leave it out for the exact GELU",
                    a.edit("approximate", other, "tanh")
                ),
            );
            return None;
        }
    };
    Some(Op::Act(Activation::Gelu { tanh }))
}

fn resolve_softmax(a: &Args, _layer: &Layer) -> Option<Op> {
    let dim = a.int("dim", None)?;
    Some(Op::Softmax { dim, log: false })
}

fn resolve_log_softmax(a: &Args, _layer: &Layer) -> Option<Op> {
    let dim = a.int("dim", None)?;
    Some(Op::Softmax { dim, log: true })
}

/// Element-wise: the shape goes through.
pub fn infer_activation(cx: &Step) -> StepResult {
    Ok((cx.input.clone(), None))
}

/// The shape goes through; `dim` must be one of its dims.
pub fn infer_softmax(cx: &Step, dim: &Spanned<i64>) -> StepResult {
    if normalize_dim(dim.value, cx.input.len()).is_none() {
        return Err(cx.fail(
            FailKind::Other,
            dim.span,
            format!(
                "`{}`: dim {} is out of range for a rank-{} tensor {} (valid: {}..={})\n\
                 help: write `dim = -1`, the last dim",
                cx.name(),
                dim.value,
                cx.input.len(),
                fmt_shape(cx.input),
                -(cx.input.len() as i64),
                cx.input.len() as i64 - 1
            ),
        ));
    }
    Ok((cx.input.clone(), None))
}

pub fn lower_activation(a: Activation) -> Lowered {
    (a.summary(), StepOp::Act(a), None, Macs::zero())
}

pub fn lower_softmax(cx: &LowerCx, dim: &Spanned<i64>, log: bool) -> Lowered {
    let d = normalize_dim(dim.value, cx.input.len()).unwrap_or(0);
    let desc = format!("{}(dim {d})", if log { "LogSoftmax" } else { "Softmax" });
    (desc, StepOp::Softmax { dim: d, log }, None, Macs::zero())
}

/// An activation as its own layer.
pub fn emit_activation(e: &EmitCx, a: Activation) -> TokenStream {
    act_code(a, e.src, e.x)
}

/// `let x = act(src);`: the runtime's `activate` where the kernels'
/// epilogue has the activation (one vectorised pass off candle's
/// element-wise pool; with a gradient tracked, a custom op with a one-pass
/// backward), else candle's op.
pub fn act_code(a: Activation, src: &TokenStream, x: &Ident) -> TokenStream {
    let p = quote!(::netdsl::__private);
    match (a, epilogue(a)) {
        (_, Some(ep)) => quote!(let #x = #p::activate(&#src, #p::Epilogue::#ep)?;),
        (a, None) => candle_code(a, src, x),
    }
}

/// `let x = act(src);` with candle's differentiable op.
fn candle_code(a: Activation, src: &TokenStream, x: &Ident) -> TokenStream {
    let p = quote!(::netdsl::__private);
    match a {
        Activation::Relu => quote!(let #x = #src.relu()?;),
        Activation::Tanh => quote!(let #x = #src.tanh()?;),
        Activation::Sigmoid => quote!(let #x = #p::candle_nn::ops::sigmoid(&#src)?;),
        Activation::LeakyRelu(slope) => {
            let s = Literal::f64_unsuffixed(slope);
            quote!(let #x = #p::candle_nn::ops::leaky_relu(&#src, #s)?;)
        }
        Activation::Gelu { tanh: false } => quote!(let #x = #src.gelu_erf()?;),
        Activation::Gelu { tanh: true } => quote!(let #x = #src.gelu()?;),
        Activation::Silu => quote!(let #x = #src.silu()?;),
        Activation::Relu6 => quote!(let #x = #p::relu6(&#src)?;),
        Activation::Hardswish => quote!(let #x = #p::hardswish(&#src)?;),
    }
}

/// The runtime convolution's `Epilogue` variant that applies `a` to each
/// output tile, if it has one (`passes::activation_into_conv` fuses only
/// those).
pub fn epilogue(a: Activation) -> Option<TokenStream> {
    match a {
        Activation::Relu => Some(quote!(Relu)),
        Activation::LeakyRelu(s) => {
            let s = Literal::f32_unsuffixed(s as f32);
            Some(quote!(LeakyRelu(#s)))
        }
        Activation::Gelu { tanh: false } => Some(quote!(Gelu)),
        Activation::Silu => Some(quote!(Silu)),
        Activation::Sigmoid => Some(quote!(Sigmoid)),
        Activation::Relu6 => Some(quote!(Relu6)),
        Activation::Gelu { tanh: true } | Activation::Tanh | Activation::Hardswish => None,
    }
}

pub fn emit_softmax(e: &EmitCx, dim: usize, log: bool) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    let d = usize_lit(dim as u64);
    if log {
        quote!(let #x = #p::candle_nn::ops::log_softmax(&#src, #d)?;)
    } else {
        quote!(let #x = #p::candle_nn::ops::softmax(&#src, #d)?;)
    }
}
