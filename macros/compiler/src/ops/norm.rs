//! Batch normalisation: `BatchNorm2d` over `[B, C, H, W]`, `BatchNorm1d`
//! over `[B, C]` or `[B, C, L]`, with running statistics as buffers. A
//! batch norm after a convolution or linear layer is folded into it for
//! inference (`passes::fold_batch_norm`); [`folded_weights`] is the call that
//! reads the fold.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use crate::ast::{Layer, Value};
use crate::emit::{usize_lit, CodeEnv};
use crate::infer::FailKind;
use crate::infer::{Step, StepResult};
use crate::lower::{Fold, Holder, InitIr, StepOp};
use crate::ops::args::Args;
use crate::ops::{Alias, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::fmt_shape;

#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// 1 (`BatchNorm1d`) or 2 (`BatchNorm2d`).
    pub dims: u8,
    pub num_features: Option<Spanned<u64>>,
    pub eps: f64,
    pub momentum: f64,
    pub affine: bool,
}

const BN_ARGS: &[ArgSpec] = &[
    ArgSpec::new(
        "num_features",
        ArgKind::Count,
        Some("the input's channels"),
        "`C`; checked against the input when written",
    ),
    ArgSpec::new(
        "eps",
        ArgKind::Number,
        Some("1e-5"),
        "added to the variance before the square root; > 0",
    ),
    ArgSpec::new(
        "momentum",
        ArgKind::Number,
        Some("0.1"),
        "the weight of a batch in the running statistics, in [0, 1]",
    ),
    ArgSpec::new(
        "affine",
        ArgKind::Bool,
        Some("true"),
        "learn a per-channel scale (`weight`) and shift (`bias`)",
    ),
    ArgSpec::new(
        "track_running_stats",
        ArgKind::Bool,
        Some("true"),
        "keep running statistics; `false` is not supported yet",
    ),
];

pub const BATCH_NORM2D: OpDef = OpDef {
    name: "BatchNorm2d",
    spellings: &["BatchNorm2d", "batch_norm2d"],
    aliases: &[
        Alias::new("BatchNormalization", "Keras", "BatchNorm2d"),
        Alias::new("BatchNorm", "Flax", "BatchNorm2d"),
    ],
    positional: &["num_features"],
    args: BN_ARGS,
    resolve: resolve_batch_norm2d,
};

pub const BATCH_NORM1D: OpDef = OpDef {
    name: "BatchNorm1d",
    spellings: &["BatchNorm1d", "batch_norm1d"],
    aliases: &[],
    positional: &["num_features"],
    args: BN_ARGS,
    resolve: resolve_batch_norm1d,
};

fn resolve_batch_norm2d(a: &Args, _layer: &Layer) -> Option<Op> {
    resolve_batch_norm(a, 2)
}

fn resolve_batch_norm1d(a: &Args, _layer: &Layer) -> Option<Op> {
    resolve_batch_norm(a, 1)
}

fn resolve_batch_norm(a: &Args, dims: u8) -> Option<Op> {
    let (cx, op, whole) = (a.cx, a.op, a.whole);
    let num_features = a.uint("num_features", 1, None);
    let eps = a.float("eps", 1e-5, 0.0, f64::INFINITY, false);
    let momentum = a.float("momentum", 0.1, 0.0, 1.0, true);
    let affine = a.boolean("affine", true);
    let track = a.boolean("track_running_stats", true);
    if track == Some(false) {
        cx.error(
            a.get("track_running_stats").map_or(whole, Value::span),
            format!("`{op}` without running statistics is not supported yet: inference needs them"),
        );
        return None;
    }
    Some(Op::BatchNorm(BatchNorm {
        dims,
        num_features: num_features?,
        eps: eps?.value,
        momentum: momentum?.value,
        affine: affine?,
    }))
}

/// The shape goes through; dim 1 is the channels it normalises.
pub fn infer_batch_norm(cx: &Step, bn: &BatchNorm) -> StepResult {
    let op = if bn.dims == 2 {
        "BatchNorm2d"
    } else {
        "BatchNorm1d"
    };
    let ranks_ok = if bn.dims == 2 {
        cx.input.len() == 4
    } else {
        matches!(cx.input.len(), 2 | 3)
    };
    if !ranks_ok {
        let want = if bn.dims == 2 {
            "a 4-D input [B, C, H, W]"
        } else {
            "a 2-D [B, C] or 3-D [B, C, L] input"
        };
        let hint = match (bn.dims, cx.input.len()) {
            (2, 2 | 3) => "\nhelp: use `BatchNorm1d` on a [B, C] or [B, C, L] input",
            (1, 4) => "\nhelp: use `BatchNorm2d` on a [B, C, H, W] input",
            _ => "",
        };
        return Err(cx.fail(
            FailKind::Other,
            cx.layer.span,
            format!(
                "`{}` ({op}) needs {want}, but {} gives {}{hint}",
                cx.name(),
                cx.prev,
                fmt_shape(cx.input)
            ),
        ));
    }
    let c = cx.known(1, "number of channels")?;
    if let Some(written) = bn.num_features {
        if written.value != c {
            let mut f = cx.fail(
                FailKind::Mismatch,
                written.span,
                format!(
                    "`{}` normalises {} channels, but {} gives {c} ({})",
                    cx.name(),
                    written.value,
                    cx.prev,
                    fmt_shape(cx.input)
                ),
            );
            f.help
                .push(format!("write `{op}({c})`, or `{op}` to infer it"));
            return Err(f);
        }
    }
    Ok((cx.input.clone(), None))
}

/// `weight` and `bias` (with `affine`), buffers `running_mean`,
/// `running_var` and `num_batches_tracked`.
pub fn lower_batch_norm(cx: &LowerCx, bn: &BatchNorm) -> Lowered {
    let c = cx.input[1].known().unwrap_or(0);
    let mut params = Vec::new();
    if bn.affine {
        params.push(cx.param("weight", vec![c], InitIr::Ones));
        params.push(cx.param("bias", vec![c], InitIr::Zeros));
    }
    params.push(cx.param("running_mean", vec![c], InitIr::BufferZeros));
    params.push(cx.param("running_var", vec![c], InitIr::BufferOnes));
    params.push(cx.param("num_batches_tracked", vec![], InitIr::Counter));
    let absent = if bn.affine {
        vec![]
    } else {
        vec!["weight", "bias"]
    };
    let mut desc = format!("BatchNorm{}d({c}", bn.dims);
    if bn.eps != 1e-5 {
        desc += &format!(", eps {}", bn.eps);
    }
    if !bn.affine {
        desc += ", no affine";
    }
    desc += ")";
    let step = StepOp::BatchNorm {
        field: cx.ident.clone(),
        eps: bn.eps,
        momentum: bn.momentum,
        affine: bn.affine,
        folded: false,
    };
    (
        desc,
        step,
        Some(cx.field(Holder::new("BatchNormParams"), params, absent)),
        Macs::per_sample(cx.output, 1),
    )
}

/// Nothing when `folded`: the layer before runs it.
pub fn emit_batch_norm(
    e: &EmitCx,
    field: &Ident,
    eps: f64,
    momentum: f64,
    folded: bool,
) -> Option<TokenStream> {
    if folded {
        return None;
    }
    let p = quote!(::netdsl::__private);
    let (src, x, training) = (e.src, e.x, &e.training);
    let eps = Literal::f64_unsuffixed(eps);
    let momentum = Literal::f64_unsuffixed(momentum);
    let f = e.env.field(field);
    Some(quote!(let #x = #p::batch_norm(&#src, &#f, #eps, #momentum, #training)?;))
}

/// `fold` weights of `field` with batch norm `fold.bn`, from the cache.
pub fn folded_weights(field: &Ident, fold: &Fold, env: &CodeEnv) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let bn = env.field(&fold.bn);
    let sources = fold_sources(field, fold, env);
    let field = env.field(field);
    let slot = usize_lit(fold.slot as u64);
    let eps = Literal::f64_unsuffixed(fold.eps);
    quote! {
        let (weight, bias) = self.fusion.get(
            #slot,
            &[#(#sources),*],
            || #p::bn_fold(&#field.weight, &#field.bias, &#bn, #eps),
        )?;
    }
}

/// The tensors a fold reads: its cache key.
pub fn fold_sources(field: &Ident, fold: &Fold, env: &CodeEnv) -> Vec<TokenStream> {
    let bn = env.field(&fold.bn);
    let field = env.field(field);
    let mut sources = vec![quote!(&#field.weight)];
    if fold.layer_bias {
        sources.push(quote!(&#field.bias));
    }
    if fold.affine {
        sources.extend([quote!(&#bn.weight), quote!(&#bn.bias)]);
    }
    sources.extend([quote!(&#bn.running_mean), quote!(&#bn.running_var)]);
    sources
}
