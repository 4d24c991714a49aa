//! Reshapes without weights: `Flatten` folds a run of dims into one.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Layer;
use crate::emit::usize_lit;
use crate::infer::FailKind;
use crate::infer::{Step, StepResult};
use crate::lower::StepOp;
use crate::ops::args::Args;
use crate::ops::{ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, normalize_dim, product, Shape};

pub const FLATTEN: OpDef = OpDef {
    name: "Flatten",
    spellings: &["Flatten", "flatten"],
    aliases: &[],
    positional: &["start_dim", "end_dim"],
    args: &[
        ArgSpec::new(
            "start_dim",
            ArgKind::Int,
            Some("1"),
            "the first dim folded; negative counts from the end",
        ),
        ArgSpec::new(
            "end_dim",
            ArgKind::Int,
            Some("-1"),
            "the last dim folded; negative counts from the end",
        ),
    ],
    resolve: resolve_flatten,
};

fn resolve_flatten(a: &Args, _layer: &Layer) -> Option<Op> {
    let (start, end) = (a.int("start_dim", Some(1)), a.int("end_dim", Some(-1)));
    Some(Op::Flatten {
        start: start?,
        end: end?,
    })
}

/// `[.., d_start, .., d_end, ..]` -> `[.., d_start * .. * d_end, ..]`.
pub fn infer_flatten(cx: &Step, start: &Spanned<i64>, end: &Spanned<i64>) -> StepResult {
    let rank = cx.input.len();
    let valid = format!(
        "valid dims for a rank-{rank} tensor {} are {}..={}",
        fmt_shape(cx.input),
        -(rank as i64),
        rank as i64 - 1
    );
    let (s, e) = (
        normalize_dim(start.value, rank),
        normalize_dim(end.value, rank),
    );
    for (key, dim, ok) in [
        ("start_dim", start, s.is_some()),
        ("end_dim", end, e.is_some()),
    ] {
        if !ok {
            return Err(cx.fail(
                FailKind::Other,
                dim.span,
                format!(
                    "`{}`: {key} = {} is out of range: {valid}\nhelp: write `{key} = {}`",
                    cx.name(),
                    dim.value,
                    dim.value
                        .clamp(-(rank as i64), (rank as i64 - 1).max(-(rank as i64)))
                ),
            ));
        }
    }
    let (Some(s), Some(e)) = (s, e) else {
        return Err(cx.fail(FailKind::Other, start.span, valid));
    };
    if s > e {
        return Err(cx.fail(
            FailKind::Other,
            start.span,
            format!(
                "`{}`: start_dim {s} comes after end_dim {e}\nhelp: write `start_dim = {e}` \
                 (or swap them: start_dim {e}, end_dim {s})",
                cx.name()
            ),
        ));
    }
    let mut out: Shape = cx.input[..s].to_vec();
    out.push(product(&cx.input[s..=e]));
    out.extend_from_slice(&cx.input[e + 1..]);
    let trace = cx.reshape_trace(&out);
    Ok((out, Some(trace)))
}

pub fn lower_flatten(cx: &LowerCx, start: &Spanned<i64>, end: &Spanned<i64>) -> Lowered {
    let input = cx.input;
    let rank = input.len();
    let s = normalize_dim(start.value, rank).unwrap_or(0);
    let e = normalize_dim(end.value, rank).unwrap_or(0);
    let desc = if (s, e) == (1, rank - 1) {
        "Flatten".to_string()
    } else {
        format!("Flatten({s}..={e})")
    };
    (
        desc,
        StepOp::Flatten {
            start: s,
            end: e,
            rank,
        },
        None,
        Macs::zero(),
    )
}

pub fn emit_flatten(e: &EmitCx, start: usize, end: usize, rank: usize) -> TokenStream {
    let (src, x) = (e.src, e.x);
    let s = usize_lit(start as u64);
    if end + 1 == rank {
        quote!(let #x = #src.flatten_from(#s)?;)
    } else {
        let e = usize_lit(end as u64);
        quote!(let #x = #src.flatten(#s, #e)?;)
    }
}

pub const TRANSPOSE: OpDef = OpDef {
    name: "Transpose",
    spellings: &["Transpose", "transpose"],
    aliases: &[],
    positional: &["dim0", "dim1"],
    args: &[
        ArgSpec::new(
            "dim0",
            ArgKind::Int,
            None,
            "one dim swapped; negative counts from the end",
        ),
        ArgSpec::new(
            "dim1",
            ArgKind::Int,
            None,
            "the other dim swapped; negative counts from the end",
        ),
    ],
    resolve: resolve_transpose,
};

fn resolve_transpose(a: &Args, _layer: &Layer) -> Option<Op> {
    let (d0, d1) = (a.int("dim0", None), a.int("dim1", None));
    Some(Op::Transpose { d0: d0?, d1: d1? })
}

/// The two dims swapped: `[B, T, F]` -> `[B, F, T]` with `Transpose(1, 2)`.
pub fn infer_transpose(cx: &Step, d0: &Spanned<i64>, d1: &Spanned<i64>) -> StepResult {
    let rank = cx.input.len();
    let mut dims = [0usize; 2];
    for (slot, (key, d)) in [("dim0", d0), ("dim1", d1)].into_iter().enumerate() {
        match normalize_dim(d.value, rank) {
            Some(n) => dims[slot] = n,
            None => {
                return Err(cx.fail(
                    FailKind::Other,
                    d.span,
                    format!(
                        "`{}`: {key} = {} is out of range: valid dims for a rank-{rank} tensor {} are {}..={}\n\
                         help: write `{key} = {}`",
                        cx.name(),
                        d.value,
                        fmt_shape(cx.input),
                        -(rank as i64),
                        rank as i64 - 1,
                        d.value.clamp(-(rank as i64), (rank as i64 - 1).max(-(rank as i64)))
                    ),
                ))
            }
        }
    }
    let mut out: Shape = cx.input.clone();
    out.swap(dims[0], dims[1]);
    let trace = cx.reshape_trace(&out);
    Ok((out, Some(trace)))
}

pub fn lower_transpose(cx: &LowerCx, d0: &Spanned<i64>, d1: &Spanned<i64>) -> Lowered {
    let rank = cx.input.len();
    let a = normalize_dim(d0.value, rank).unwrap_or(0);
    let b = normalize_dim(d1.value, rank).unwrap_or(0);
    let (a, b) = (a.min(b), a.max(b));
    (
        format!("Transpose({a}, {b})"),
        StepOp::Transpose { d0: a, d1: b },
        None,
        Macs::zero(),
    )
}

/// A strided view; the ops after it take any layout.
pub fn emit_transpose(e: &EmitCx, d0: usize, d1: usize) -> TokenStream {
    let (src, x) = (e.src, e.x);
    if d0 == d1 {
        return quote!(let #x = #src.clone(););
    }
    let (a, b) = (usize_lit(d0 as u64), usize_lit(d1 as u64));
    quote!(let #x = #src.transpose(#a, #b)?;)
}

// ---------------------------------------------------------------------------
// Reverse
// ---------------------------------------------------------------------------

/// `Reverse(dim = 1)`: the order along a dim reversed (`torch.flip`); with
/// `lengths = lens`, each sequence reversed within its own length, the
/// padding left in place (the input reversal of Sutskever et al.'s
/// sequence-to-sequence models, over padded batches).
#[derive(Clone, Debug)]
pub struct Reverse {
    pub dim: Spanned<i64>,
    /// The lengths tensor, with the value it names once resolved.
    pub lengths: Vec<(proc_macro2::Ident, Option<usize>)>,
}

pub const REVERSE: OpDef = OpDef {
    name: "Reverse",
    spellings: &["Reverse", "reverse", "Flip", "flip"],
    aliases: &[],
    positional: &["dim"],
    args: &[
        ArgSpec::new(
            "dim",
            ArgKind::Int,
            Some("1"),
            "the dim reversed (time in `[B, T, F]`); negative counts from the end",
        )
        .aka(&["dims"]),
        ArgSpec::new(
            "lengths",
            ArgKind::Tensors,
            Some("none (the whole dim)"),
            "a `[B]` tensor bound earlier: each sequence is reversed within its length, the padding stays",
        ),
    ],
    resolve: resolve_reverse,
};

fn resolve_reverse(a: &Args, _layer: &Layer) -> Option<Op> {
    let dim = a.int("dim", Some(1));
    let lengths = a.tensor("lengths", "a `[B]` tensor");
    let (dim, lengths) = (dim?, lengths?);
    Some(Op::Reverse(Reverse {
        dim,
        lengths: lengths.into_iter().map(|i| (i, None)).collect(),
    }))
}

/// The shape goes through. The dim must exist, and with `lengths` it is not
/// the batch dim and the lengths are `[B]`.
pub fn infer_reverse(cx: &Step, r: &Reverse) -> StepResult {
    let rank = cx.input.len();
    let Some(d) = normalize_dim(r.dim.value, rank) else {
        return Err(cx.fail(
            FailKind::Other,
            r.dim.span,
            format!(
                "`{}`: dim {} is out of range for {} (rank {rank})",
                cx.name(),
                r.dim.value,
                fmt_shape(cx.input)
            ),
        ));
    };
    if !r.lengths.is_empty() {
        if d == 0 {
            let mut f = cx.fail(
                FailKind::Other,
                r.dim.span,
                format!(
                    "`{}` reverses each sequence within its length along dim 0, the batch",
                    cx.name()
                ),
            );
            f.help
                .push("reverse along time: `dim = 1` for `[B, T, F]`".to_string());
            return Err(f);
        }
        cx.lengths_arg(r.lengths.first(), &cx.input[0], "length")?;
    }
    Ok((cx.input.clone(), None))
}

pub fn lower_reverse(cx: &LowerCx, r: &Reverse) -> Lowered {
    let d = normalize_dim(r.dim.value, cx.input.len()).unwrap_or(1);
    let lengths = r
        .lengths
        .first()
        .and_then(|(_, v)| v.and_then(|v| cx.value(v)));
    let desc = if lengths.is_some() {
        format!("Reverse(dim {d}, within lengths)")
    } else {
        format!("Reverse(dim {d})")
    };
    (
        desc,
        StepOp::Reverse { dim: d, lengths },
        None,
        Macs::zero(),
    )
}

pub fn emit_reverse(e: &EmitCx, dim: usize, lengths: Option<&proc_macro2::Ident>) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    let d = usize_lit(dim as u64);
    let lengths = match lengths {
        Some(l) => quote!(::core::option::Option::Some(&#l)),
        None => quote!(::core::option::Option::None),
    };
    quote!(let #x = #p::reverse(&#src, #d, #lengths)?;)
}
