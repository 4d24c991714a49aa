//! The graph ops: several tensors into one (`a + b`, `a - b`, `a * b`,
//! `cat`, `crop`) and one into several (`chunk`, `split`). Each is one node
//! of the graph with its inputs (values bound earlier) and its outputs: the
//! node's value is output 0, and an [`Output`](crate::resolve::NodeKind::Output)
//! node names each further one (`let (a, b) = chunk(x, 2, dim = 1);`).
//!
//! This file is their one home: what they are ([`MergeKind`]), how their
//! arguments are read (`read_*`, called by `resolve` when it builds the
//! node), the shape rule over all inputs giving all outputs ([`infer`]),
//! the lowering of each output ([`lower`]) and the code it becomes
//! ([`emit`]).

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use crate::ast::{BinOp, SplitHow, Value};
use crate::diag::{Ctxt, SpanRange};
use crate::emit::usize_lit;
use crate::lower::MergeIr;
use crate::resolve::{subst, Env, Spanned};
use crate::shape::{fmt_shape, normalize_dim, Constraints, Dim, Shape};

#[derive(Clone, Debug)]
pub enum MergeKind {
    /// `cat(a, b, .., dim = d)`.
    Cat { dim: i64, dim_span: SpanRange },
    /// Centre crop of input 0 to input 1's height and width.
    Crop,
    /// Crop of input 0 to `size`, centred or at `offset` (top, left).
    CropSize {
        size: Spanned<(u64, u64)>,
        offset: Option<Spanned<(u64, u64)>>,
    },
    /// `chunk`/`split` of input 0 along `dim` into `count` pieces (as many
    /// as the `let` binds; the rule checks the cut gives that many).
    Split {
        how: SplitSpec,
        dim: i64,
        dim_span: SpanRange,
        count: usize,
    },
    /// `a + b`, `a - b`, `a * b`.
    Binary(BinOp),
}

#[derive(Clone, Debug)]
pub enum SplitSpec {
    Chunk(Spanned<u64>),
    Size(Spanned<u64>),
    Sizes(Vec<Spanned<u64>>),
}

impl MergeKind {
    /// How many tensors it gives.
    pub fn outputs(&self) -> usize {
        match self {
            MergeKind::Split { count, .. } => *count,
            MergeKind::Cat { .. }
            | MergeKind::Crop
            | MergeKind::CropSize { .. }
            | MergeKind::Binary(_) => 1,
        }
    }

    /// How messages name it: "the `cat`".
    pub fn symbol(&self) -> &'static str {
        match self {
            MergeKind::Cat { .. } => "cat",
            MergeKind::Crop | MergeKind::CropSize { .. } => "crop",
            MergeKind::Split { .. } => "chunk",
            MergeKind::Binary(op) => op.symbol(),
        }
    }
}

/// One input as the rule sees it: its shape, the tokens it was written as,
/// and how messages name it.
pub type Operand = (Shape, SpanRange, String);

// ---- Reading the arguments (resolve) ----

/// `cat(a, b, .., dim = d)` with `inputs` tensors: two or more, and `dim`
/// given.
pub fn read_cat(
    cx: &Ctxt,
    inputs: usize,
    dim: Option<(i64, SpanRange)>,
    span: SpanRange,
) -> MergeKind {
    if inputs < 2 {
        cx.error(
            span,
            "`cat` joins two or more tensors: `cat(a, b, dim = 1)`",
        );
    }
    let (dim, dim_span) = match dim {
        Some(d) => d,
        None => {
            cx.error(
                span,
                "`cat` needs `dim`\nhelp: write `cat(a, b, dim = 1)` to join channels",
            );
            (1, span)
        }
    };
    MergeKind::Cat { dim, dim_span }
}

/// `crop(a, size = (h, w))`, with `top = .., left = ..` when `offset` is
/// given: whole numbers; `None` after an error.
pub fn read_crop_size(
    cx: &Ctxt,
    env: &Env,
    size: &(Value, Value),
    offset: Option<&(Value, Value)>,
) -> Option<MergeKind> {
    let pair = |(a, b): &(Value, Value), what: &str| -> Option<Spanned<(u64, u64)>> {
        let mut out = [0u64; 2];
        for (slot, v) in out.iter_mut().zip([a, b]) {
            match subst(cx, env, v)? {
                Value::Int(n, _) if n >= 0 => *slot = n as u64,
                other => {
                    cx.error(
                        other.span(),
                        format!("`crop` {what} needs integers, found {other}"),
                    );
                    return None;
                }
            }
        }
        Some(Spanned {
            value: (out[0], out[1]),
            span: a.span().to(b.span()),
            written: true,
        })
    };
    let size = pair(size, "size");
    let offset = offset.map(|o| pair(o, "top/left"));
    match (size, offset) {
        (Some(size), None) => Some(MergeKind::CropSize { size, offset: None }),
        (Some(size), Some(Some(o))) => Some(MergeKind::CropSize {
            size,
            offset: Some(o),
        }),
        _ => None,
    }
}

/// `chunk(x, n, dim = d)` / `split(x, s | [a, b, ..], dim = d)` bound by
/// `count` names; `None` after an error.
pub fn read_split(
    cx: &Ctxt,
    env: &Env,
    how: &SplitHow,
    dim: Option<(i64, SpanRange)>,
    span: SpanRange,
    count: usize,
) -> Option<MergeKind> {
    let uint = |v: &Value, what: &str| -> Option<Spanned<u64>> {
        match subst(cx, env, v) {
            Some(Value::Int(n, s)) if n >= 1 => Some(Spanned {
                value: n as u64,
                span: s,
                written: true,
            }),
            Some(other) => {
                cx.error(
                    other.span(),
                    format!("`{what}` needs a positive integer, found {other}"),
                );
                None
            }
            None => None,
        }
    };
    let spec = match how {
        SplitHow::Chunk(n) => uint(n, "chunk").and_then(|n| {
            if n.value as usize != count {
                cx.error(
                    n.span,
                    format!(
                        "`chunk(.., {})` gives {} tensors, but `let` binds {count}\n\
                         help: write `chunk(.., {count}, ..)` or bind {} names",
                        n.value, n.value, n.value
                    ),
                );
                return None;
            }
            Some(SplitSpec::Chunk(n))
        }),
        SplitHow::Sizes(sizes, false) => uint(&sizes[0], "split").map(SplitSpec::Size),
        SplitHow::Sizes(sizes, true) => {
            let sizes: Option<Vec<Spanned<u64>>> = sizes.iter().map(|v| uint(v, "split")).collect();
            sizes.and_then(|sizes| {
                if sizes.len() != count {
                    cx.error(
                        span,
                        format!(
                            "`split` into {} sizes gives {} tensors, but `let` binds {count}",
                            sizes.len(),
                            sizes.len()
                        ),
                    );
                    return None;
                }
                Some(SplitSpec::Sizes(sizes))
            })
        }
    };
    let (dim, dim_span) = match dim {
        Some(d) => d,
        None => {
            cx.error(
                span,
                "`chunk`/`split` needs `dim`\nhelp: write `chunk(x, 2, dim = 1)` to split channels",
            );
            (1, span)
        }
    };
    Some(MergeKind::Split {
        how: spec?,
        dim,
        dim_span,
        count,
    })
}

// ---- The shape rule (infer) ----

/// The shape rule: every output's shape, or the error at the input that
/// does not fit.
///
/// - `a + b` (and `-`, `*`): PyTorch broadcasting: shapes aligned on the
///   right, each pair of dims equal or one of them 1.
/// - `cat(.., dim = d)`: same rank, every dim equal but `d`, which adds up.
/// - `crop(a, like = b)`: `a`'s batch and channels, `b`'s height and width,
///   which must fit inside `a`'s; `crop(a, size = ..)` that size.
/// - `chunk`/`split`: one shape per piece, as `torch.chunk`/`torch.split`
///   cut the dim, as many as the `let` binds.
pub fn infer(
    kind: &MergeKind,
    inputs: &[Operand],
    span: SpanRange,
    cons: &mut Constraints,
) -> Result<Vec<Shape>, (SpanRange, String)> {
    let kind = kind.clone();
    let crop_hint = |big: &Operand, small: &Operand| match (big.0.get(2..4), small.0.get(2..4)) {
        (Some([Dim::Known(h), Dim::Known(w)]), Some([Dim::Known(sh), Dim::Known(sw)]))
            if h >= sh && w >= sw && (h, w) != (sh, sw) =>
        {
            let name = big.2.trim_matches('`');
            let like = small.2.trim_matches('`');
            format!(
                "\nhelp: crop {} from {h}x{w} to {sh}x{sw}: write `crop({name}, like = {like})` for `{name}`",
                big.2
            )
        }
        _ => String::new(),
    };
    match kind {
        MergeKind::Binary(op) => {
            let (a, b) = (&inputs[0], &inputs[1]);
            let rank = a.0.len().max(b.0.len());
            let mut out = Vec::with_capacity(rank);
            let why = format!("the `{}` of {} and {}", op.symbol(), a.2, b.2);
            for i in 0..rank {
                let da = (i + a.0.len()).checked_sub(rank).map(|j| &a.0[j]);
                let db = (i + b.0.len()).checked_sub(rank).map(|j| &b.0[j]);
                // Equal, or equal for some values of their symbol (`2*(H/2)`
                // and `H`: a rule checked at the input).
                if let (Some(x), Some(y)) = (da, db) {
                    if cons.need_equal(x, y, &why).map_err(|m| (span, m))? {
                        out.push(x.clone());
                        continue;
                    }
                }
                out.push(match (da, db) {
                    (Some(x), None) | (None, Some(x)) => x.clone(),
                    (Some(Dim::Known(1)), Some(y)) => y.clone(),
                    (Some(x), Some(Dim::Known(1))) => x.clone(),
                    (Some(x), Some(y)) => {
                        let (big, small) = if x.known() >= y.known() {
                            (a, b)
                        } else {
                            (b, a)
                        };
                        return Err((
                            span,
                            format!(
                                "`{}` needs shapes that broadcast, but dim {i} is {x} in {} and {y} in {} \
                                 (neither is 1)\n  {}: {}\n  {}: {}{}",
                                op.symbol(),
                                a.2,
                                b.2,
                                a.2,
                                fmt_shape(&a.0),
                                b.2,
                                fmt_shape(&b.0),
                                crop_hint(big, small)
                            ),
                        ));
                    }
                    (None, None) => Dim::Known(1),
                });
            }
            Ok(vec![out])
        }
        MergeKind::Cat { dim, dim_span } => {
            let first = &inputs[0];
            let rank = first.0.len();
            let Some(d) = normalize_dim(dim, rank) else {
                return Err((
                    dim_span,
                    format!(
                        "`cat`: dim {dim} is out of range for rank-{rank} tensors ({})",
                        fmt_shape(&first.0)
                    ),
                ));
            };
            let mut out = first.0.clone();
            for other in &inputs[1..] {
                if other.0.len() != rank {
                    return Err((
                        other.1,
                        format!(
                            "`cat` joins tensors of one rank, but {} is {} and {} is {}",
                            first.2,
                            fmt_shape(&first.0),
                            other.2,
                            fmt_shape(&other.0)
                        ),
                    ));
                }
                let why = format!("the `cat` of {} and {}", first.2, other.2);
                for (i, (x, y)) in first.0.iter().zip(&other.0).enumerate() {
                    if i != d && !cons.need_equal(x, y, &why).map_err(|m| (other.1, m))? {
                        let (big, small) = if x.known() >= y.known() {
                            (first, other)
                        } else {
                            (other, first)
                        };
                        return Err((
                            SpanRange::single(span.start),
                            format!(
                                "`cat` along dim {d} needs every other dim equal, but dim {i} is {x} in {} and {y} in {}\n  {}: {}\n  {}: {}{}",
                                first.2,
                                other.2,
                                first.2,
                                fmt_shape(&first.0),
                                other.2,
                                fmt_shape(&other.0),
                                crop_hint(big, small)
                            ),
                        ));
                    }
                }
                out[d] = match (&out[d], &other.0[d]) {
                    (Dim::Known(x), Dim::Known(y)) => Dim::Known(x + y),
                    (Dim::Lin(x), Dim::Lin(y)) if x.sym == y.sym => Dim::Lin(x.add(y)),
                    (x, y) => Dim::Sym(format!("{x}+{y}")),
                };
            }
            Ok(vec![out])
        }
        MergeKind::Crop => {
            let (src, like) = (&inputs[0], &inputs[1]);
            if src.0.len() != 4 || like.0.len() != 4 {
                return Err((
                    span,
                    format!(
                        "`crop` works on [B, C, H, W] tensors, but {} is {} and {} is {}",
                        src.2,
                        fmt_shape(&src.0),
                        like.2,
                        fmt_shape(&like.0)
                    ),
                ));
            }
            for (axis, name) in [(2, "H"), (3, "W")] {
                let larger = |s: &dyn std::fmt::Display, l: &dyn std::fmt::Display| {
                    Err((
                        like.1,
                        format!(
                            "`crop` cannot make {} larger: its {name} is {s}, {} asks for {l}{}",
                            src.2,
                            like.2,
                            // Both plain names: crop the other way round.
                            match (plain(&src.2), plain(&like.2)) {
                                (Some(a), Some(b)) => format!(
                                    "\nhelp: crop the larger one to the smaller: write `crop({b}, like = {a})`"
                                ),
                                _ => String::new(),
                            }
                        ),
                    ))
                };
                match (&src.0[axis], &like.0[axis]) {
                    (Dim::Known(s), Dim::Known(l)) if l > s => return larger(s, l),
                    (Dim::Known(_), Dim::Known(_)) => {}
                    (s, l) if s == l => {}
                    (Dim::Lin(s), Dim::Lin(l)) if s.sym == l.sym => {
                        // s - l must not be negative: a smallest size where
                        // it grows, never where it shrinks.
                        let diff = s.sub(l);
                        match diff.min_sym(0) {
                            Some(_) if diff.slope().0 > 0 => {
                                cons.need_at_least(&diff, 0, &format!("the `crop` to {}", like.2))
                            }
                            Some(_) => {}
                            None => return larger(s, l),
                        }
                    }
                    (Dim::Lin(s), Dim::Known(l)) => {
                        cons.need_at_least(s, *l as i64, &format!("the `crop` to {}", like.2));
                    }
                    (s, l) => {
                        return Err((
                            span,
                            format!(
                            "`crop` needs sizes it can compare: {name} is {s} in {} and {l} in {}",
                            src.2, like.2
                        ),
                        ))
                    }
                }
            }
            Ok(vec![vec![
                src.0[0].clone(),
                src.0[1].clone(),
                like.0[2].clone(),
                like.0[3].clone(),
            ]])
        }
        MergeKind::CropSize { size, offset } => {
            let src = &inputs[0];
            if src.0.len() != 4 {
                return Err((
                    span,
                    format!(
                        "`crop` works on [B, C, H, W] tensors, but {} is {}",
                        src.2,
                        fmt_shape(&src.0)
                    ),
                ));
            }
            let (h, w) = size.value;
            let (top, left) = offset.map_or((0, 0), |o| o.value);
            for (axis, name, want, start, key) in
                [(2, "H", h, top, "top"), (3, "W", w, left, "left")]
            {
                let need = want + start;
                match &src.0[axis] {
                    Dim::Known(n) if *n < want => {
                        return Err((
                            size.span,
                            format!(
                                "`crop` is larger than its source: {name} = {want}, but {} has {name} = {n}\n  {}: {}\n\
                                 help: write `size = {}`, the source's size",
                                src.2,
                                src.2,
                                fmt_shape(&src.0),
                                match (&src.0[2], &src.0[3]) {
                                    (Dim::Known(a), Dim::Known(b)) => format!("({}, {})", a.min(&h), b.min(&w)),
                                    _ => format!("({n}, {n})"),
                                }
                            ),
                        ))
                    }
                    Dim::Known(n) if *n < need => {
                        let o = offset.map_or(size.span, |o| o.span);
                        return Err((
                            o,
                            format!(
                                "the crop runs past the edge of {}: `{key} = {start}` with {name} = {want} ends at {need}, \
                                 but {name} is {n}\nhelp: `{key}` at most {}",
                                src.2,
                                n - want
                            ),
                        ))
                    }
                    Dim::Known(_) => {}
                    Dim::Lin(l) => cons.need_at_least(l, need as i64, "a `crop`"),
                    other => {
                        return Err((
                            span,
                            format!("`crop` needs a size it can compare: {name} is {other} in {}", src.2),
                        ))
                    }
                }
            }
            Ok(vec![vec![
                src.0[0].clone(),
                src.0[1].clone(),
                Dim::Known(h),
                Dim::Known(w),
            ]])
        }
        MergeKind::Split {
            how,
            dim,
            dim_span,
            count,
        } => {
            let src = &inputs[0];
            let rank = src.0.len();
            let Some(d) = normalize_dim(dim, rank) else {
                return Err((
                    dim_span,
                    format!(
                        "dim {dim} is out of range for {} {}",
                        src.2,
                        fmt_shape(&src.0)
                    ),
                ));
            };
            let Dim::Known(total) = src.0[d] else {
                return Err((
                    span,
                    format!(
                        "splitting needs a known size, but dim {d} of {} is `{}`",
                        src.2, src.0[d]
                    ),
                ));
            };
            let how_span = match &how {
                SplitSpec::Chunk(n) | SplitSpec::Size(n) => n.span,
                SplitSpec::Sizes(v) => match (v.first(), v.last()) {
                    (Some(a), Some(b)) => a.span.to(b.span),
                    _ => span,
                },
            };
            let ranges = piece_ranges(&how, total).map_err(|m| {
                let (m, edit) = m.split_once('\n').unwrap_or((m.as_str(), ""));
                (
                    how_span,
                    format!(
                        "{m}, but dim {d} of {} is {total} ({})\nhelp: write sizes that add up to {total}{edit}",
                        src.2,
                        fmt_shape(&src.0)
                    ),
                )
            })?;
            if ranges.len() != count {
                let parts: Vec<String> = ranges.iter().map(|r| r.1.to_string()).collect();
                let (call, why, help) = match &how {
                    SplitSpec::Chunk(n) => (
                        format!("chunk(.., {})", n.value),
                        format!(
                            "; torch.chunk cuts pieces of ceil({total} / {}) = {}",
                            n.value,
                            total.div_ceil(n.value)
                        ),
                        format!(
                            "bind {} names, or give the sizes: `split(.., [..], dim = {dim})`",
                            ranges.len()
                        ),
                    ),
                    SplitSpec::Size(n) => (
                        format!("split(.., {})", n.value),
                        String::new(),
                        if total % count as u64 == 0 {
                            format!(
                                "bind {} names, or split into {count}: `split(.., {}, dim = {dim})`",
                                ranges.len(),
                                total / count as u64
                            )
                        } else {
                            format!("bind {} names", ranges.len())
                        },
                    ),
                    SplitSpec::Sizes(_) => (
                        "split".to_string(),
                        String::new(),
                        format!("bind {} names", ranges.len()),
                    ),
                };
                return Err((
                    how_span,
                    format!(
                        "`{call}` of dim {d} = {total} of {} gives {} tensors ({}{why}), but `let` binds {count}\nhelp: {help}",
                        src.2,
                        ranges.len(),
                        parts.join(" + ")
                    ),
                ));
            }
            Ok(ranges
                .iter()
                .map(|&(_, len)| {
                    let mut out = src.0.clone();
                    out[d] = Dim::Known(len);
                    out
                })
                .collect())
        }
    }
}

/// `(start, length)` of each piece of a dim of size `total`, as
/// `torch.chunk` and `torch.split` cut it.
pub fn piece_ranges(how: &SplitSpec, total: u64) -> Result<Vec<(u64, u64)>, String> {
    let by_size = |size: u64| -> Vec<(u64, u64)> {
        (0..total.div_ceil(size))
            .map(|i| (i * size, size.min(total - i * size)))
            .collect()
    };
    match how {
        SplitSpec::Chunk(n) => {
            if n.value > total {
                return Err(format!(
                    "`chunk` into {} pieces is more than the size",
                    n.value
                ));
            }
            // torch.chunk: pieces of ceil(total / n), the last smaller.
            Ok(by_size(total.div_ceil(n.value)))
        }
        SplitSpec::Size(s) => Ok(by_size(s.value)),
        SplitSpec::Sizes(sizes) => {
            let sum: u64 = sizes.iter().map(|s| s.value).sum();
            if sum != total {
                // The last size takes the rest (or the sizes are cut).
                let mut fixed: Vec<u64> = Vec::new();
                let mut left = total;
                for (i, s) in sizes.iter().enumerate() {
                    let v = if i + 1 == sizes.len() {
                        left
                    } else {
                        s.value.min(left)
                    };
                    left -= v;
                    fixed.push(v);
                }
                let fixed: Vec<String> = fixed
                    .iter()
                    .filter(|v| **v > 0)
                    .map(u64::to_string)
                    .collect();
                return Err(format!(
                    "`split` sizes add up to {sum} ({})\n: `{}`",
                    sizes
                        .iter()
                        .map(|s| s.value.to_string())
                        .collect::<Vec<_>>()
                        .join(" + "),
                    fixed.join(", ")
                ));
            }
            let mut start = 0;
            Ok(sizes
                .iter()
                .map(|s| {
                    let r = (start, s.value);
                    start += s.value;
                    r
                })
                .collect())
        }
    }
}

// ---- Lowering and emission ----

/// Output `index` of a graph op, lowered: the name its summary row has
/// (`cat`), the op as the generated comment and graph write it
/// (`Cat(dim 1)`), the summary's text when it differs (symbolic sizes in
/// braces), and what it runs.
pub struct Lowered {
    pub label: &'static str,
    pub op: String,
    pub row_op: Option<String>,
    pub ir: MergeIr,
}

/// Output `index` of `kind` over inputs of shapes `ins`, giving `out`.
pub fn lower(kind: &MergeKind, ins: &[Shape], out: &Shape, index: usize) -> Lowered {
    let plain = |label, op: String, ir| Lowered {
        label,
        op,
        row_op: None,
        ir,
    };
    match kind {
        MergeKind::Cat { dim, .. } => {
            let d = normalize_dim(*dim, out.len()).unwrap_or(0);
            plain("cat", format!("Cat(dim {d})"), MergeIr::Cat { dim: d })
        }
        MergeKind::Crop => {
            let (h, w) = (&out[2], &out[3]);
            let size = h.known().zip(w.known());
            Lowered {
                label: "crop",
                op: format!("CenterCrop({h} x {w})"),
                // `summary_at` evaluates the sizes in braces.
                row_op: Some(format!(
                    "CenterCrop({} x {})",
                    crate::ops::sized(h),
                    crate::ops::sized(w)
                )),
                ir: MergeIr::Crop { size },
            }
        }
        MergeKind::CropSize { size, offset } => {
            let (h, w) = size.value;
            match offset {
                None => plain(
                    "crop",
                    format!("CenterCrop({h} x {w})"),
                    MergeIr::Crop { size: Some((h, w)) },
                ),
                Some(o) => plain(
                    "crop",
                    format!("Crop({h} x {w} at {}, {})", o.value.0, o.value.1),
                    MergeIr::CropAt {
                        top: o.value.0,
                        left: o.value.1,
                        h,
                        w,
                    },
                ),
            }
        }
        MergeKind::Split { how, dim, .. } => {
            let src = ins.first().map(Vec::as_slice).unwrap_or_default();
            let d = normalize_dim(*dim, src.len()).unwrap_or(0);
            let total = src.get(d).and_then(Dim::known).unwrap_or(0);
            let (start, len) = piece_ranges(how, total)
                .ok()
                .and_then(|r| r.get(index).copied())
                .unwrap_or((0, 0));
            plain(
                "piece",
                format!("Narrow(dim {d}, {start}..{})", start + len),
                MergeIr::Piece { dim: d, start, len },
            )
        }
        MergeKind::Binary(op) => {
            let name = match op {
                BinOp::Add => "Add",
                BinOp::Sub => "Sub",
                BinOp::Mul => "Mul",
            };
            plain(op.symbol(), name.to_string(), MergeIr::Binary(*op))
        }
    }
}

/// `let dst = ..;` for one lowered output over the input variables `args`.
pub fn emit(ir: &MergeIr, dst: &Ident, args: &[TokenStream]) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let arg = |k: usize| args.get(k).cloned().unwrap_or_default();
    match ir {
        MergeIr::Cat { dim } => {
            let d = usize_lit(*dim as u64);
            quote!(let #dst = #p::concat(&[#(&#args),*], #d)?;)
        }
        MergeIr::Crop { size: Some((h, w)) } => {
            let (a, h, w) = (arg(0), usize_lit(*h), usize_lit(*w));
            quote!(let #dst = #p::center_crop(&#a, #h, #w)?;)
        }
        MergeIr::Crop { size: None } => {
            let (a, b) = (arg(0), arg(1));
            quote!(let #dst = #p::center_crop(&#a, #b.dim(2)?, #b.dim(3)?)?;)
        }
        MergeIr::CropAt { top, left, h, w } => {
            let a = arg(0);
            let (t, l, h, w) = (
                usize_lit(*top),
                usize_lit(*left),
                usize_lit(*h),
                usize_lit(*w),
            );
            quote!(let #dst = #a.narrow(2, #t, #h)?.narrow(3, #l, #w)?;)
        }
        MergeIr::Piece { dim, start, len } => {
            let a = arg(0);
            let (d, st, l) = (usize_lit(*dim as u64), usize_lit(*start), usize_lit(*len));
            quote!(let #dst = #a.narrow(#d, #st, #l)?;)
        }
        MergeIr::Binary(op) => {
            let (a, b) = (arg(0), arg(1));
            let f = match op {
                BinOp::Add => quote!(Add),
                BinOp::Sub => quote!(Sub),
                BinOp::Mul => quote!(Mul),
            };
            quote!(let #dst = #p::merge_binary(&#a, &#b, #p::MergeOp::#f)?;)
        }
    }
}

/// The name in a display name written as a plain `` `name` ``.
fn plain(display: &str) -> Option<&str> {
    let inner = display.strip_prefix('`')?.strip_suffix('`')?;
    inner
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_')
        .then_some(inner)
}

/// The edit that makes a merge's operands fit, when one layer does it:
/// for `+`, `-` and `*` of [B, C, H, W] tensors, a projection shortcut on
/// the operand with fewer channels or more rows (a 1x1 convolution with
/// the stride that halves the rows, as torchvision's `downsample`, with
/// its batch norm when the network uses batch norm); for `cat`, an
/// up-sampling of the operand whose rows are a whole fraction of the
/// other's. Only for operands written as a name, which the edit replaces:
/// `help: .. write `(x -> ..)` for `x``.
pub fn remedy(kind: &MergeKind, inputs: &[Operand], uses_batch_norm: bool) -> Option<String> {
    // Known, non-zero sizes only (a zero was reported where it was made).
    let known = |o: &Operand| -> Option<[u64; 3]> {
        match o.0.as_slice() {
            [_, Dim::Known(c), Dim::Known(h), Dim::Known(w)] if *c > 0 && *h > 0 && *w > 0 => {
                Some([*c, *h, *w])
            }
            _ => None,
        }
    };
    let [a, b, ..] = inputs else {
        return None;
    };
    match kind {
        MergeKind::Binary(_) => {
            let (sa, sb) = (known(a)?, known(b)?);
            // The shortcut: fewer channels, or as many and more rows.
            let (short, s, main) = if (sa[0], sb[1]) < (sb[0], sa[1]) {
                (a, sa, sb)
            } else {
                (b, sb, sa)
            };
            let stride = s[1] / main[1];
            let fits = stride >= 1
                && (s[1].div_ceil(stride), s[2].div_ceil(stride)) == (main[1], main[2])
                && (s[0], stride) != (main[0], 1);
            let name = plain(&short.2)?;
            if !fits {
                return None;
            }
            let stride_arg = if stride > 1 {
                format!(", stride = {stride}")
            } else {
                String::new()
            };
            let (conv, bn) = if uses_batch_norm {
                (
                    format!("Conv2d({}, kernel = 1{stride_arg}, bias = false)", main[0]),
                    " -> BatchNorm2d",
                )
            } else {
                (format!("Conv2d({}, kernel = 1{stride_arg})", main[0]), "")
            };
            Some(format!(
                "project the shortcut to [B, {}, {}, {}]: write `({name} -> downsample: seq {{ {conv}{bn} }})` for `{name}`",
                main[0], main[1], main[2]
            ))
        }
        MergeKind::Cat { .. } => {
            let (sa, sb) = (known(a)?, known(b)?);
            let (small, s, big) = if sa[1] < sb[1] {
                (a, sa, sb)
            } else {
                (b, sb, sa)
            };
            let f = big[1] / s[1];
            if f < 2 || s[1] * f != big[1] || s[2] * f != big[2] {
                return None;
            }
            let name = plain(&small.2)?;
            Some(format!(
                "up-sample {} from {}x{} to {}x{}: write `({name} -> Upsample(scale_factor = {f}))` for `{name}`",
                small.2, s[1], s[2], big[1], big[2]
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

    fn at<T>(value: T) -> Spanned<T> {
        Spanned {
            value,
            span: SpanRange::single(Span::call_site()),
            written: true,
        }
    }

    fn operand(dims: &[u64]) -> Operand {
        (
            dims.iter().map(|&d| Dim::Known(d)).collect(),
            SpanRange::single(Span::call_site()),
            "`x`".to_string(),
        )
    }

    /// One call of the rule gives every piece's shape, as `torch.chunk` and
    /// `torch.split` cut; each output lowers to its own range.
    #[test]
    fn a_split_gives_every_output() {
        let span = SpanRange::single(Span::call_site());
        let x = operand(&[2, 10, 4]);
        let chunk = MergeKind::Split {
            how: SplitSpec::Chunk(at(3)),
            dim: 1,
            dim_span: span,
            count: 3,
        };
        let outs = infer(
            &chunk,
            std::slice::from_ref(&x),
            span,
            &mut Constraints::default(),
        )
        .unwrap();
        let sizes: Vec<u64> = outs.iter().map(|s| s[1].known().unwrap()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(chunk.outputs(), 3);
        let ranges: Vec<MergeIr> = (0..3)
            .map(|k| lower(&chunk, std::slice::from_ref(&x.0), &outs[k], k).ir)
            .collect();
        assert!(matches!(
            ranges[2],
            MergeIr::Piece {
                dim: 1,
                start: 8,
                len: 2
            }
        ));
        let split = MergeKind::Split {
            how: SplitSpec::Sizes(vec![at(3), at(7)]),
            dim: -2,
            dim_span: span,
            count: 2,
        };
        let outs = infer(
            &split,
            std::slice::from_ref(&x),
            span,
            &mut Constraints::default(),
        )
        .unwrap();
        assert_eq!(outs.len(), 2);
        assert_eq!(outs[1], vec![Dim::Known(2), Dim::Known(7), Dim::Known(4)]);
        // Sizes that do not add up: one error, at the sizes.
        let bad = MergeKind::Split {
            how: SplitSpec::Sizes(vec![at(3), at(6)]),
            dim: 1,
            dim_span: span,
            count: 2,
        };
        let err = infer(&bad, &[x], span, &mut Constraints::default()).unwrap_err();
        assert!(err.1.contains("add up to 9"), "{}", err.1);
    }

    #[test]
    fn merges_give_one_output() {
        let span = SpanRange::single(Span::call_site());
        let (a, b) = (operand(&[2, 3, 5, 5]), operand(&[2, 1, 5, 5]));
        let add = MergeKind::Binary(BinOp::Add);
        let outs = infer(
            &add,
            &[a.clone(), b.clone()],
            span,
            &mut Constraints::default(),
        );
        assert_eq!(outs.unwrap(), vec![a.0.clone()]);
        let cat = MergeKind::Cat {
            dim: 1,
            dim_span: span,
        };
        let outs = infer(&cat, &[a, b], span, &mut Constraints::default()).unwrap();
        assert_eq!(outs[0][1], Dim::Known(4));
        assert_eq!((add.outputs(), cat.outputs()), (1, 1));
    }
}
