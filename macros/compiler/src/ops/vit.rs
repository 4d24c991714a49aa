//! The vision transformer's own layers (Dosovitskiy et al., 2021), with
//! torchvision's parameter names: `PatchEmbed` (a convolution with kernel =
//! stride = patch, flattened to a sequence of patches), `ClassToken` (a
//! learned token put before the sequence), `PosEmbedding` (a learned
//! position embedding added to it) and `Select` (one position of a dim,
//! `x[:, 0]`).

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use crate::ast::Layer;
use crate::emit::usize_lit;
use crate::infer::FailKind;
use crate::infer::{Step, StepResult};
use crate::lower::{Holder, InitIr, StepOp};
use crate::ops::args::{Args, WeightInit};
use crate::ops::{ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, normalize_dim, Dim};

#[derive(Clone, Debug)]
pub struct PatchEmbed {
    pub in_ch: Option<Spanned<u64>>,
    pub dim: Spanned<u64>,
    pub patch: Spanned<u64>,
}

pub const PATCH_EMBED: OpDef = OpDef {
    name: "PatchEmbed",
    spellings: &["PatchEmbed", "patch_embed"],
    aliases: &[],
    positional: &["dim"],
    args: &[
        ArgSpec::new(
            "dim",
            ArgKind::Channels,
            None,
            "the embedding width `E`, or `C -> E` to check the input's channels",
        ),
        ArgSpec::new(
            "patch",
            ArgKind::Count,
            None,
            "the patch side `P` (the kernel and the stride); must divide the image's height and width",
        )
        .aka(&["patch_size"]),
    ],
    resolve: resolve_patch_embed,
};

fn resolve_patch_embed(a: &Args, _layer: &Layer) -> Option<Op> {
    let dim = a.channels("dim");
    let patch = a.uint("patch", 1, None);
    let ((in_ch, dim), patch) = (dim?, patch?);
    let Some(patch) = patch else {
        a.missing(format!(
            "`{}` needs the patch size\nhelp: write `{}({}, patch = 16)`",
            a.op, a.op, dim.value
        ));
        return None;
    };
    Some(Op::PatchEmbed(PatchEmbed { in_ch, dim, patch }))
}

/// `[B, C, H, W]` -> `[B, (H / P) * (W / P), E]`; `P` divides `H` and `W`.
pub fn infer_patch_embed(cx: &Step, pe: &PatchEmbed) -> StepResult {
    cx.need_rank("PatchEmbed", 4, "[B, C, H, W]")?;
    let c = cx.known(1, "number of channels")?;
    if let Some(written) = pe.in_ch {
        if written.value != c {
            let mut f = cx.fail(
                FailKind::Mismatch,
                written.span,
                format!(
                    "`{}` expects {} input channels, but {} gives {c} ({})",
                    cx.name(),
                    written.value,
                    cx.prev,
                    fmt_shape(cx.input)
                ),
            );
            f.help.push(format!(
                "write `PatchEmbed({c} -> {}, patch = {})`, or `PatchEmbed({}, ..)` to infer it",
                pe.dim.value, pe.patch.value, pe.dim.value
            ));
            return Err(f);
        }
    }
    let p = pe.patch.value;
    let h = cx.known(2, "image height")?;
    let w = cx.known(3, "image width")?;
    for (what, n) in [("height", h), ("width", w)] {
        if n % p != 0 {
            let below = n / p * p;
            let divisors: Vec<String> = (1..=n.min(64))
                .filter(|d| n % d == 0 && (h % d == 0) && (w % d == 0))
                .map(|d| d.to_string())
                .collect();
            let mut f = cx.fail(
                FailKind::Other,
                pe.patch.span,
                format!(
                    "`{}` cuts the image into {p}x{p} patches, but its {what} {n} is not a multiple of {p}: \
                     {n} / {p} = {} rem {}",
                    cx.name(),
                    n / p,
                    n % p
                ),
            );
            let sizes = if below == 0 {
                format!("{p}")
            } else {
                format!("{below} or {}", below + p)
            };
            // The dividing patch nearest the one written.
            let nearest = divisors
                .iter()
                .filter_map(|d| d.parse::<u64>().ok())
                .min_by_key(|d| (d.abs_diff(p), std::cmp::Reverse(*d)))
                .unwrap_or(1);
            f.help.push(format!(
                "write `patch = {nearest}`, a patch that divides {h}x{w} ({}), \
                 or resize the image to a multiple of {p} ({sizes})",
                divisors.join(", ")
            ));
            return Err(f);
        }
    }
    let n = (h / p) * (w / p);
    let out = vec![cx.input[0].clone(), Dim::Known(n), Dim::Known(pe.dim.value)];
    let trace = format!(
        "{}: ({h} / {p}) * ({w} / {p}) = {n} patches of {} features",
        cx.name(),
        pe.dim.value
    );
    Ok((out, Some(trace)))
}

/// torchvision's `conv_proj`: `weight` `[E, C, P, P]`, `bias` `[E]`, PyTorch's
/// Conv2d default init.
pub fn lower_patch_embed(cx: &LowerCx, pe: &PatchEmbed) -> Lowered {
    let c = cx.input.get(1).and_then(Dim::known).unwrap_or(0);
    let (e, p) = (pe.dim.value, pe.patch.value);
    let fan_in = c * p * p;
    let params = vec![
        cx.param(
            "weight",
            vec![e, c, p, p],
            InitIr::Weight {
                fan_in,
                fan_out: e * p * p,
                scheme: WeightInit::Default,
            },
        ),
        cx.param("bias", vec![e], InitIr::Bias { fan_in }),
    ];
    let macs = Macs::per_sample(cx.output, fan_in);
    (
        format!("PatchEmbed({c} -> {e}, patch {p})"),
        StepOp::PatchEmbed {
            field: cx.ident.clone(),
            patch: p,
        },
        Some(cx.field(Holder::new("Conv2dParams"), params, vec![])),
        macs,
    )
}

/// The runtime's `patch_embed`: the patches gathered with one copy, then one
/// matrix multiply.
pub fn emit_patch_embed(e: &EmitCx, field: &Ident, patch: u64) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, training) = (e.src, e.x, &e.training);
    let f = e.env.field(field);
    let patch = usize_lit(patch);
    quote!(let #x = #p::patch_embed(&#src, &#f, #patch, #training)?;)
}

// ---------------------------------------------------------------------------
// ClassToken, PosEmbedding
// ---------------------------------------------------------------------------

pub const CLASS_TOKEN: OpDef = OpDef {
    name: "ClassToken",
    spellings: &["ClassToken", "class_token"],
    aliases: &[],
    positional: &[],
    args: &[],
    resolve: resolve_class_token,
};

pub const POS_EMBEDDING: OpDef = OpDef {
    name: "PosEmbedding",
    spellings: &["PosEmbedding", "pos_embedding"],
    aliases: &[],
    positional: &[],
    args: &[],
    resolve: resolve_pos_embedding,
};

fn resolve_class_token(_a: &Args, _layer: &Layer) -> Option<Op> {
    Some(Op::ClassToken)
}

fn resolve_pos_embedding(_a: &Args, _layer: &Layer) -> Option<Op> {
    Some(Op::PosEmbedding)
}

/// `[B, T, E]` -> `[B, T + 1, E]`.
pub fn infer_class_token(cx: &Step) -> StepResult {
    cx.need_rank("ClassToken", 3, "[B, T, E]")?;
    let t = cx.known(1, "sequence length")?;
    cx.known(2, "model width")?;
    let mut out = cx.input.clone();
    out[1] = Dim::Known(t + 1);
    let trace = cx.reshape_trace(&out);
    Ok((out, Some(trace)))
}

/// The shape goes through; `T` and `E` known (the embedding's shape).
pub fn infer_pos_embedding(cx: &Step) -> StepResult {
    cx.need_rank("PosEmbedding", 3, "[B, T, E]")?;
    cx.known(1, "sequence length")?;
    cx.known(2, "model width")?;
    Ok((cx.input.clone(), None))
}

/// torchvision's `class_token`: one tensor `[1, 1, E]` named by the layer's
/// path, zeros.
pub fn lower_class_token(cx: &LowerCx) -> Lowered {
    let e = cx.input.get(2).and_then(Dim::known).unwrap_or(0);
    let params = vec![cx.param("", vec![1, 1, e], InitIr::Zeros)];
    (
        format!("ClassToken({e})"),
        StepOp::ClassToken {
            field: cx.ident.clone(),
        },
        Some(cx.field(Holder::tensor(), params, vec![])),
        Macs::zero(),
    )
}

/// torchvision's `pos_embedding`: one tensor `[1, T, E]` named by the
/// layer's path, N(0, 0.02²).
pub fn lower_pos_embedding(cx: &LowerCx) -> Lowered {
    let t = cx.input.get(1).and_then(Dim::known).unwrap_or(0);
    let e = cx.input.get(2).and_then(Dim::known).unwrap_or(0);
    let params = vec![cx.param("", vec![1, t, e], InitIr::Normal { std_1e6: 20_000 })];
    (
        format!("PosEmbedding({t}, {e})"),
        StepOp::PosEmbedding {
            field: cx.ident.clone(),
        },
        Some(cx.field(Holder::tensor(), params, vec![])),
        Macs::per_sample(cx.output, 1),
    )
}

pub fn emit_class_token(e: &EmitCx, field: &Ident) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, training) = (e.src, e.x, &e.training);
    let f = e.env.field(field);
    quote!(let #x = #p::prepend_token(&#src, &#p::param(&#f, #training))?;)
}

pub fn emit_pos_embedding(e: &EmitCx, field: &Ident) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, training) = (e.src, e.x, &e.training);
    let f = e.env.field(field);
    quote!(let #x = #src.broadcast_add(&#p::param(&#f, #training))?;)
}

// ---------------------------------------------------------------------------
// Select
// ---------------------------------------------------------------------------

pub const SELECT: OpDef = OpDef {
    name: "Select",
    spellings: &["Select", "select"],
    aliases: &[],
    positional: &["dim", "index"],
    args: &[
        ArgSpec::new(
            "dim",
            ArgKind::Int,
            None,
            "the dim indexed (and dropped); negative counts from the end",
        ),
        ArgSpec::new(
            "index",
            ArgKind::Int,
            None,
            "the position kept along `dim`; negative counts from the end",
        ),
    ],
    resolve: resolve_select,
};

fn resolve_select(a: &Args, _layer: &Layer) -> Option<Op> {
    let dim = a.int("dim", None);
    let index = a.int("index", None);
    Some(Op::Select {
        dim: dim?,
        index: index?,
    })
}

/// `torch.select(x, dim, index)`: the dim is dropped; the index must lie
/// inside it.
pub fn infer_select(cx: &Step, dim: &Spanned<i64>, index: &Spanned<i64>) -> StepResult {
    let rank = cx.input.len();
    let Some(d) = normalize_dim(dim.value, rank) else {
        return Err(cx.fail(
            FailKind::Other,
            dim.span,
            format!(
                "`{}`: dim {} is outside {} (rank {rank})",
                cx.name(),
                dim.value,
                fmt_shape(cx.input)
            ),
        ));
    };
    // Dim 0 is the batch where it is a symbol; a known dim 0 (a recurrent
    // layer's final state, `[layers * directions, B, H]`) may be indexed.
    if d == 0 && cx.input[0].known().is_none() {
        return Err(cx.fail(
            FailKind::Other,
            dim.span,
            format!("`{}` cannot select along the batch dim", cx.name()),
        ));
    }
    if let Dim::Lin(l) = &cx.input[d] {
        // A size the input decides: the index must fit its smallest value,
        // checked when the network runs; a negative one counts from the end.
        let need = if index.value < 0 {
            -index.value
        } else {
            index.value + 1
        };
        cx.cons.borrow_mut().need_at_least(l, need, &cx.why());
        let mut out = cx.input.clone();
        out.remove(d);
        let trace = cx.reshape_trace(&out);
        return Ok((out, Some(trace)));
    }
    let n = cx.known(d, "size to index")?;
    let i = if index.value < 0 {
        index.value + n as i64
    } else {
        index.value
    };
    if i < 0 || i >= n as i64 {
        return Err(cx.fail(
            FailKind::Other,
            index.span,
            format!(
                "`{}`: index {} is outside dim {d} of {}, which has {n} positions",
                cx.name(),
                index.value,
                fmt_shape(cx.input)
            ),
        ));
    }
    let mut out = cx.input.clone();
    out.remove(d);
    let trace = cx.reshape_trace(&out);
    Ok((out, Some(trace)))
}

pub fn lower_select(cx: &LowerCx, dim: &Spanned<i64>, index: &Spanned<i64>) -> Lowered {
    let rank = cx.input.len();
    let d = normalize_dim(dim.value, rank).unwrap_or(1);
    // Negative over a known size: normalised; over a size the input
    // decides: kept, counted from the end when the network runs.
    let i = match cx.input.get(d).and_then(Dim::known) {
        Some(n) if index.value < 0 => index.value + n as i64,
        _ => index.value,
    };
    (
        format!("Select(dim {d}, index {i})"),
        StepOp::Select { dim: d, index: i },
        None,
        Macs::zero(),
    )
}

pub fn emit_select(e: &EmitCx, dim: usize, index: i64) -> TokenStream {
    let (src, x) = (e.src, e.x);
    let d = usize_lit(dim as u64);
    if index < 0 {
        // The input check keeps the size at least `-index`.
        let back = usize_lit(index.unsigned_abs());
        quote!(let #x = #src.narrow(#d, #src.dim(#d)?.saturating_sub(#back), 1usize)?.squeeze(#d)?;)
    } else {
        let i = usize_lit(index as u64);
        quote!(let #x = #src.narrow(#d, #i, 1usize)?.squeeze(#d)?;)
    }
}

// ---------------------------------------------------------------------------
// SinusoidalEncoding
// ---------------------------------------------------------------------------

pub const SINUSOIDAL_ENCODING: OpDef = OpDef {
    name: "SinusoidalEncoding",
    spellings: &["SinusoidalEncoding", "sinusoidal_encoding"],
    aliases: &[],
    positional: &[],
    args: &[],
    resolve: resolve_sinusoidal,
};

fn resolve_sinusoidal(_a: &Args, _layer: &Layer) -> Option<Op> {
    Some(Op::SinusoidalEncoding)
}

/// The shape goes through; `E` known (the encoding's width).
pub fn infer_sinusoidal(cx: &Step) -> StepResult {
    cx.need_rank("SinusoidalEncoding", 3, "[B, T, E]")?;
    cx.known(2, "model width")?;
    Ok((cx.input.clone(), None))
}

pub fn lower_sinusoidal(cx: &LowerCx) -> Lowered {
    let e = cx.input.get(2).and_then(Dim::known).unwrap_or(0);
    (
        format!("SinusoidalEncoding({e})"),
        StepOp::SinusoidalEncoding,
        None,
        Macs::per_sample(cx.output, 1),
    )
}

/// The runtime adds the encoding, computed once per shape and kept.
pub fn emit_sinusoidal(e: &EmitCx) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    quote!(let #x = #p::add_sinusoidal(&#src)?;)
}

// ---------------------------------------------------------------------------
// DropPath
// ---------------------------------------------------------------------------

pub const DROP_PATH: OpDef = OpDef {
    name: "DropPath",
    spellings: &["DropPath", "drop_path", "StochasticDepth"],
    aliases: &[],
    positional: &["p"],
    args: &[ArgSpec::new(
        "p",
        ArgKind::Number,
        None,
        "the probability of dropping a sample's whole branch in training, in [0, 1]",
    )
    .aka(&["drop_prob"])],
    resolve: resolve_drop_path,
};

fn resolve_drop_path(a: &Args, _layer: &Layer) -> Option<Op> {
    let p = a.float("p", 0.0, 0.0, 1.0, true)?;
    if !p.written {
        a.missing(format!(
            "`{}` needs the drop probability\nhelp: write `{}(0.1)`",
            a.op, a.op
        ));
        return None;
    }
    Some(Op::DropPath { p: p.value })
}

/// The shape goes through (dim 0, the batch, is the one drawn over).
pub fn infer_drop_path(cx: &Step) -> StepResult {
    Ok((cx.input.clone(), None))
}

pub fn lower_drop_path(p: f64) -> Lowered {
    (
        format!("DropPath({p})"),
        StepOp::DropPath { p },
        None,
        crate::ops::Macs::zero(),
    )
}

/// timm's `drop_path`: the identity in inference; in training one draw per
/// sample from the network's generator.
pub fn emit_drop_path(e: &EmitCx, rate: f64) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, training, rng) = (e.src, e.x, &e.training, &e.rng);
    let rate = proc_macro2::Literal::f64_unsuffixed(rate);
    quote!(let #x = #p::drop_path(&#src, #rate, #training, #rng)?;)
}
