//! `MultiHeadAttention`: `torch.nn.MultiheadAttention` with
//! `batch_first=True` as self-attention over `[B, T, E]`, with its
//! parameter names (`in_proj_weight`, `in_proj_bias`, `out_proj.weight`,
//! `out_proj.bias`), so its weights load unchanged; or, with `layout`,
//! timm's (`qkv`, `proj`) or Hugging Face's separate projections (`q_proj`,
//! `k_proj`, `v_proj`, `out_proj`). Q, K and V come from one matrix
//! multiply; the heads split with one copy.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use crate::ast::{Layer, Value};
use crate::emit::usize_lit;
use crate::infer::FailKind;
use crate::infer::{Step, StepResult};
use crate::lower::{Holder, InitIr, StepOp};
use crate::ops::args::{Args, WeightInit};
use crate::ops::{Alias, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, Dim};

#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    /// The model width `E` as written; `None`: the input's last dim.
    pub dim: Option<Spanned<u64>>,
    pub heads: Spanned<u64>,
    pub bias: bool,
    /// Queries attend only to keys at or before their position.
    pub causal: bool,
    /// Dropout on the attention weights, in training.
    pub dropout: f64,
    /// Whose parameter names.
    pub layout: MhaLayout,
    /// Tensors read besides the query, with the values they name once
    /// resolved: the memory (cross-attention: keys and values from it),
    /// then the key lengths (keys past each sequence's length are masked).
    pub tensors: Vec<(Ident, Option<usize>)>,
    pub memory: bool,
    pub key_lengths: bool,
    /// A mask tensor over the scores (after the memory and key lengths).
    pub mask: bool,
    /// The width of the keys and the values (the memory's), when it is not
    /// the query's: PyTorch's `kdim`/`vdim` (one memory gives both).
    pub kdim: Option<Spanned<u64>>,
}

impl MultiHeadAttention {
    pub fn memory_arg(&self) -> Option<&(Ident, Option<usize>)> {
        self.memory.then(|| self.tensors.first()).flatten()
    }

    pub fn key_lengths_arg(&self) -> Option<&(Ident, Option<usize>)> {
        self.key_lengths
            .then(|| self.tensors.get(usize::from(self.memory)))
            .flatten()
    }

    pub fn mask_arg(&self) -> Option<&(Ident, Option<usize>)> {
        self.mask.then(|| self.tensors.last()).flatten()
    }
}

/// The parameter names (and the runtime holder) of a multi-head attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MhaLayout {
    /// `nn.MultiheadAttention`: `in_proj_weight`, `in_proj_bias`, `out_proj`.
    Torch,
    /// timm's `Attention`: `qkv` (`[3E, E]`), `proj`.
    Timm,
    /// Hugging Face's CLIP, BART, Whisper, OPT: `q_proj`, `k_proj`, `v_proj`,
    /// `out_proj`.
    Hf,
}

pub const MULTI_HEAD_ATTENTION: OpDef = OpDef {
    name: "MultiHeadAttention",
    spellings: &[
        "MultiHeadAttention",
        "MultiheadAttention",
        "multi_head_attention",
    ],
    aliases: &[Alias::new("MultiHeadDotProductAttention", "Flax", "MultiHeadAttention({args})"), Alias::new("SelfAttention", "Flax", "MultiHeadAttention({args})")],
    positional: &["dim", "heads"],
    args: &[
        ArgSpec::new(
            "dim",
            ArgKind::Count,
            Some("the input's last dim"),
            "the model width `E`; checked against the input when written",
        )
        .aka(&["embed_dim"]),
        ArgSpec::new(
            "heads",
            ArgKind::Count,
            None,
            "the number of heads; must divide `dim`",
        )
        .aka(&["num_heads"]),
        ArgSpec::new(
            "bias",
            ArgKind::Bool,
            Some("true"),
            "learn `in_proj_bias` and `out_proj.bias`",
        ),
        ArgSpec::new(
            "dropout",
            ArgKind::Number,
            Some("0.0"),
            "dropout on the attention weights in training, in [0, 1]",
        ),
        ArgSpec::new(
            "causal",
            ArgKind::Bool,
            Some("false"),
            "each position attends only to itself and earlier ones (a causal mask)",
        )
        .aka(&["is_causal"]),
        ArgSpec::new(
            "layout",
            ArgKind::Choice(&["torch", "timm", "hf"]),
            Some("torch"),
            "the parameter names: `torch` (`in_proj_weight`, `out_proj`), `timm` (`qkv`, `proj`) or `hf` (`q_proj`, `k_proj`, `v_proj`, `out_proj`)",
        ),
        ArgSpec::new(
            "batch_first",
            ArgKind::Bool,
            Some("true"),
            "`[B, T, E]`; `false` (`[T, B, E]`) is not supported",
        ),
        ArgSpec::new(
            "memory",
            ArgKind::Tensors,
            Some("none (self-attention)"),
            "cross-attention: keys and values from this `[B, S, E]` tensor bound earlier (an encoder's output)",
        ),
        ArgSpec::new(
            "mask",
            ArgKind::Tensors,
            Some("none"),
            "a mask over the scores `[T, S]` (or anything that broadcasts to `[B, heads, T, S]`), a tensor bound earlier: token-id dtype blocks where non-zero, floats are added (PyTorch's `attn_mask`)",
        )
        .aka(&["attn_mask"]),
        ArgSpec::new(
            "kdim",
            ArgKind::Count,
            Some("`dim`"),
            "the memory's width, when it differs from the query's: the key and value projections then read it (`k_proj_weight` `[E, kdim]`), as `nn.MultiheadAttention(kdim=..)`",
        ),
        ArgSpec::new(
            "vdim",
            ArgKind::Count,
            Some("`kdim`"),
            "the values' width; one memory gives keys and values, so it equals `kdim`",
        ),
        ArgSpec::new(
            "key_lengths",
            ArgKind::Tensors,
            Some("none"),
            "a `[B]` tensor bound earlier: keys at or past each sequence's length are masked out (PyTorch's key_padding_mask)",
        ),
    ],
    resolve: resolve_mha,
};

fn resolve_mha(a: &Args, _layer: &Layer) -> Option<Op> {
    let dim = a.uint("dim", 1, None);
    let heads = a.uint("heads", 1, None);
    let bias = a.boolean("bias", true);
    let dropout = a.float("dropout", 0.0, 0.0, 1.0, true);
    let causal = a.boolean("causal", false);
    let batch_first = a.boolean("batch_first", true);
    let layout = match a.get("layout") {
        None => Some(MhaLayout::Torch),
        Some(Value::Ident(i)) if i == "torch" => Some(MhaLayout::Torch),
        Some(Value::Ident(i)) if i == "timm" => Some(MhaLayout::Timm),
        Some(Value::Ident(i)) if i == "hf" => Some(MhaLayout::Hf),
        Some(other) => {
            // By spelling, then by meaning (`huggingface`, `pytorch`).
            let written = other.to_string().to_lowercase();
            let meant = crate::diag::did_you_mean(&written, ["torch", "timm", "hf"]).unwrap_or(
                if written.contains("hug") || written.contains("transformers") {
                    "hf"
                } else if written.contains("timm") || written.contains("image") {
                    "timm"
                } else {
                    "torch"
                },
            );
            a.cx.error(
                other.span(),
                format!(
                    "`layout` of `{}` is `torch` (`in_proj_weight`, `out_proj`), `timm` (`qkv`, `proj`) \
                     or `hf` (`q_proj`, `k_proj`, `v_proj`, `out_proj`), found `{other}`\nhelp: write {}",
                    a.op,
                    a.edit("layout", other, meant)
                ),
            );
            None
        }
    };
    if batch_first == Some(false) {
        a.cx.error(
            a.get("batch_first").map_or(a.whole, Value::span),
            format!(
                "`{}` takes batch-first inputs `[B, T, E]`; `batch_first = false` is not supported\n\
                 help: put the batch first (the DSL's sequences are `[B, T, E]`) and drop the argument",
                a.op
            ),
        );
        return None;
    }
    let heads = match heads? {
        Some(h) => h,
        None => {
            a.missing(format!(
                "`{}` needs the number of heads\nhelp: write `{}(heads = 8)`",
                a.op, a.op
            ));
            return None;
        }
    };
    let memory = a.tensor("memory", "a `[B, S, E]` tensor");
    let kdim = a.uint("kdim", 1, None);
    let vdim = a.uint("vdim", 1, None);
    let (kdim, vdim) = (kdim?, vdim?);
    // One memory gives the keys and the values: one width.
    if let (Some(k), Some(v)) = (&kdim, &vdim) {
        if k.value != v.value {
            a.cx.error(
                v.span,
                format!(
                    "`vdim` = {} but `kdim` = {}: one memory gives the keys and the values, so they \
                     have one width\nhelp: write `vdim = {}`",
                    v.value, k.value, k.value
                ),
            );
            return None;
        }
    }
    let kdim = kdim.or(vdim);
    let key_lengths = a.tensor("key_lengths", "a `[B]` tensor");
    let mask = a.tensor("mask", "a mask tensor");
    let (memory, key_lengths, mask) = (memory?, key_lengths?, mask?);
    let tensors: Vec<(Ident, Option<usize>)> = memory
        .iter()
        .chain(key_lengths.iter())
        .chain(mask.iter())
        .map(|i| (i.clone(), None))
        .collect();
    Some(Op::MultiHeadAttention(MultiHeadAttention {
        dim: dim?,
        heads,
        bias: bias?,
        causal: causal?,
        dropout: dropout?.value,
        layout: layout?,
        tensors,
        memory: memory.is_some(),
        key_lengths: key_lengths.is_some(),
        mask: mask.is_some(),
        kdim,
    }))
}

/// `[B, T, E]` -> `[B, T, E]`; `E` known, equal to `dim` when written, and
/// a multiple of `heads`.
pub fn infer_mha(cx: &Step, m: &MultiHeadAttention) -> StepResult {
    cx.need_rank("MultiHeadAttention", 3, "[B, T, E]")?;
    let e = cx.known(2, "model width")?;
    if let Some(written) = m.dim {
        if written.value != e {
            let mut f = cx.fail(
                FailKind::Mismatch,
                written.span,
                format!(
                    "`{}` has a width of {}, but {} gives {e} features ({})",
                    cx.name(),
                    written.value,
                    cx.prev,
                    fmt_shape(cx.input)
                ),
            );
            f.help.push(format!(
                "write `MultiHeadAttention({e}, {})`, or `MultiHeadAttention(heads = {})` to infer it",
                m.heads.value, m.heads.value
            ));
            return Err(f);
        }
    }
    let h = m.heads.value;
    if e % h != 0 {
        let mut f = cx.fail(
            FailKind::Other,
            m.heads.span,
            format!(
                "`{}` splits a width of {e} into {h} heads, but {e} / {h} = {} is not whole",
                cx.name(),
                fmt_ratio(e, h)
            ),
        );
        f.help.push(heads_fix(e, h));
        return Err(f);
    }
    // `kdim`: the memory's width, in a layout that keeps the key and value
    // projections apart.
    if let Some(k) = m.kdim.as_ref().filter(|k| k.value != e) {
        let why = if m.memory_arg().is_none() {
            Some(format!(
                "`kdim` = {} is the width of a memory, but `{}` attends to its own input, of width {e} \
                 (self-attention)\nhelp: remove `kdim`",
                k.value,
                cx.name()
            ))
        } else if m.layout == MhaLayout::Timm {
            Some(format!(
                "`kdim` = {} needs the key and value projections apart, but timm's `qkv` is one [3E, E] \
                 weight\nhelp: write `layout = torch` (`q_proj_weight`, `k_proj_weight`, `v_proj_weight`)",
                k.value
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(cx.fail(FailKind::Other, k.span, why));
        }
    }
    // Cross-attention: the memory is [B, S, E] with the query's B and E.
    let shape_of = |v: &Option<usize>| v.and_then(|v| cx.ctx.values.get(v).cloned().flatten());
    if let Some((name, v)) = m.memory_arg() {
        if let Some(mem) = shape_of(v) {
            let span = crate::diag::SpanRange::single(name.span());
            let width = m.kdim.as_ref().map_or(e, |k| k.value);
            let ok = mem.len() == 3 && mem[0] == cx.input[0] && mem[2] == Dim::Known(width);
            if !ok {
                let mut f = cx.fail(
                    FailKind::Other,
                    span,
                    format!(
                        "`{}` attends from {} to the memory `{name}`, which must be [{}, S, {width}] \
                         (the query's batch, and {}), but is {}",
                        cx.name(),
                        fmt_shape(cx.input),
                        cx.input[0],
                        if m.kdim.is_some() { "`kdim`" } else { "the query's width" },
                        fmt_shape(&mem)
                    ),
                );
                match mem.last().and_then(Dim::known) {
                    // The keys and values read the memory's width (timm's
                    // fused qkv cannot).
                    Some(w) if mem.len() == 3 && w != width && m.layout != MhaLayout::Timm => {
                        f.help.push(format!(
                            "let the key and value projections read {w} features: write `kdim = {w}`"
                        ));
                        f.help.push(format!(
                            "project the memory to the query's width first: `{name} -> Linear({w} -> {e})`"
                        ));
                    }
                    Some(w) if mem.len() == 3 && w != e => f.help.push(format!(
                        "project the memory to the query's width first: `{name} -> Linear({w} -> {e})`, \
                         or give the query {w} features"
                    )),
                    _ => f.help.push(format!("make `{name}` a [{}, S, {e}] sequence", cx.input[0])),
                }
                return Err(f);
            }
        }
    }
    cx.lengths_arg(m.key_lengths_arg(), &cx.input[0], "key length")?;
    if let Some((name, v)) = m.mask_arg() {
        if let Some(mask) = shape_of(v) {
            let s_len = m
                .memory_arg()
                .and_then(|(_, v)| shape_of(v))
                .and_then(|mem| mem.get(1).cloned())
                .unwrap_or_else(|| cx.input[1].clone());
            let scores = vec![
                cx.input[0].clone(),
                Dim::Known(h),
                cx.input[1].clone(),
                s_len,
            ];
            let fits = mask.len() <= 4
                && mask
                    .iter()
                    .rev()
                    .zip(scores.iter().rev())
                    .all(|(m, s)| *m == Dim::Known(1) || m == s);
            if !fits {
                let mut f = cx.fail(
                    FailKind::Other,
                    crate::diag::SpanRange::single(name.span()),
                    format!(
                        "`{}`'s mask `{name}` is {}, which does not broadcast to the scores {} \
                         (batch, heads, queries, keys)",
                        cx.name(),
                        fmt_shape(&mask),
                        fmt_shape(&scores)
                    ),
                );
                f.help.push(format!(
                    "give a mask of {} (one per query and key), or {} (one per sequence)",
                    fmt_shape(&scores[2..]),
                    fmt_shape(&[
                        scores[0].clone(),
                        Dim::Known(1),
                        scores[2].clone(),
                        scores[3].clone()
                    ])
                ));
                return Err(f);
            }
        }
    }
    let trace = format!(
        "{}: {} heads of {e} / {h} = {} features",
        cx.name(),
        h,
        e / h
    );
    Ok((cx.input.clone(), Some(trace)))
}

/// `e / h` with up to two decimals (`31.25`, `33.33..`).
fn fmt_ratio(e: u64, h: u64) -> String {
    let r = e as f64 / h as f64;
    let s = format!("{r:.2}");
    if (r * 100.0).fract() == 0.0 {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{s}..")
    }
}

/// The head counts that divide `e` (nearest to `h` named) and the widths
/// near `e` that `h` divides.
pub fn heads_fix(e: u64, h: u64) -> String {
    let divisors: Vec<u64> = (1..=e).filter(|d| e.is_multiple_of(*d)).collect();
    let nearest = divisors
        .iter()
        .copied()
        .min_by_key(|d| (d.abs_diff(h), *d))
        .unwrap_or(1);
    let shown: Vec<String> = if divisors.len() <= 12 {
        divisors.iter().map(u64::to_string).collect()
    } else {
        // The ones around `h`.
        let i = divisors.iter().position(|d| *d == nearest).unwrap_or(0);
        let lo = i.saturating_sub(4);
        let hi = (lo + 9).min(divisors.len());
        let mut v: Vec<String> = divisors[lo..hi].iter().map(u64::to_string).collect();
        if lo > 0 {
            v.insert(0, "..".into());
        }
        if hi < divisors.len() {
            v.push("..".into());
        }
        v
    };
    let below = e / h * h;
    let widths = if below == 0 {
        format!("{h}")
    } else {
        format!("{below} or {}", below + h)
    };
    format!(
        "write `heads = {nearest}`: {} features per head (head counts that divide {e}: {}); \
         or make the width a multiple of {h}: {widths}",
        e / nearest,
        shown.join(", ")
    )
}

/// `in_proj_weight` `[3E, E]` (Xavier uniform, as PyTorch), `in_proj_bias`
/// `[3E]` (zeros), `out_proj.weight` `[E, E]` (PyTorch's Linear default),
/// `out_proj.bias` `[E]` (zeros); under timm's or Hugging Face's names with
/// the same values (`qkv` is `in_proj`; `q_proj`, `k_proj`, `v_proj` are its
/// thirds, each Xavier uniform over its own `[E, E]`, as Hugging Face's
/// default init does not match PyTorch's either way).
pub fn lower_mha(cx: &LowerCx, m: &MultiHeadAttention) -> Lowered {
    let e = cx.input.get(2).and_then(Dim::known).unwrap_or(0);
    let h = m.heads.value;
    let xavier = |rows: u64| InitIr::Weight {
        fan_in: e,
        fan_out: rows,
        scheme: WeightInit::XavierUniform,
    };
    let linear_default = InitIr::Weight {
        fan_in: e,
        fan_out: e,
        scheme: WeightInit::Default,
    };
    // (member, shape, init, is a bias)
    let mut members: Vec<(&'static str, Vec<u64>, InitIr, bool)> = Vec::new();
    // The memory's width when the keys and values read another than `E`.
    let kv = m.kdim.as_ref().map(|k| k.value).filter(|k| *k != e);
    let xavier_kv = |rows: u64, cols: u64| InitIr::Weight {
        fan_in: cols,
        fan_out: rows,
        scheme: WeightInit::XavierUniform,
    };
    let (holder, out) = match (m.layout, kv) {
        (MhaLayout::Torch, Some(k)) => {
            // nn.MultiheadAttention with kdim/vdim: three weights, each
            // Xavier uniform over its own shape, one stacked bias.
            members.push(("q_proj_weight", vec![e, e], xavier_kv(e, e), false));
            members.push(("k_proj_weight", vec![e, k], xavier_kv(e, k), false));
            members.push(("v_proj_weight", vec![e, k], xavier_kv(e, k), false));
            members.push(("in_proj_bias", vec![3 * e], InitIr::Zeros, true));
            (
                Holder::new("MultiheadAttentionKvParams").with_sub("out_proj", "LinearParams"),
                "out_proj",
            )
        }
        (MhaLayout::Torch, None) => {
            members.push(("in_proj_weight", vec![3 * e, e], xavier(3 * e), false));
            members.push(("in_proj_bias", vec![3 * e], InitIr::Zeros, true));
            (
                Holder::new("MultiheadAttentionParams").with_sub("out_proj", "LinearParams"),
                "out_proj",
            )
        }
        (MhaLayout::Timm, _) => {
            members.push(("qkv.weight", vec![3 * e, e], xavier(3 * e), false));
            members.push(("qkv.bias", vec![3 * e], InitIr::Zeros, true));
            (
                Holder::new("QkvAttentionParams")
                    .with_sub("qkv", "LinearParams")
                    .with_sub("proj", "LinearParams"),
                "proj",
            )
        }
        (MhaLayout::Hf, kv) => {
            let width = kv.unwrap_or(e);
            for (w, b, cols) in [
                ("q_proj.weight", "q_proj.bias", e),
                ("k_proj.weight", "k_proj.bias", width),
                ("v_proj.weight", "v_proj.bias", width),
            ] {
                members.push((w, vec![e, cols], xavier_kv(e, cols), false));
                members.push((b, vec![e], InitIr::Zeros, true));
            }
            (
                Holder::new("SeparateQkvAttentionParams")
                    .with_sub("q_proj", "LinearParams")
                    .with_sub("k_proj", "LinearParams")
                    .with_sub("v_proj", "LinearParams")
                    .with_sub("out_proj", "LinearParams"),
                "out_proj",
            )
        }
    };
    let (out_w, out_b) = match out {
        "proj" => ("proj.weight", "proj.bias"),
        _ => ("out_proj.weight", "out_proj.bias"),
    };
    members.push((out_w, vec![e, e], linear_default, false));
    members.push((out_b, vec![e], InitIr::Zeros, true));
    let mut params = Vec::new();
    let mut absent = Vec::new();
    for (name, shape, init, is_bias) in members {
        if is_bias && !m.bias {
            absent.push(name);
        } else {
            params.push(cx.param(name, shape, init));
        }
    }
    let mut desc = format!("MultiHeadAttention({e}, heads {h}");
    if m.causal {
        desc += ", causal";
    }
    if !m.bias {
        desc += ", no bias";
    }
    if let Some(k) = kv {
        desc += &format!(", kdim {k}");
    }
    match m.layout {
        MhaLayout::Torch => {}
        MhaLayout::Timm => desc += ", timm names",
        MhaLayout::Hf => desc += ", hf names",
    }
    desc += ")";
    // Per sample: the projections (4 E² per position) and the scores and
    // weighted sum (2 T² E).
    // With a memory of S steps: Q and the output over T, K and V over S.
    let t = cx.input.get(1).cloned().unwrap_or(Dim::Known(0));
    let s_len = m
        .memory_arg()
        .and_then(|(_, v)| *v)
        .and_then(|v| cx.value_shapes.get(v).cloned().flatten())
        .and_then(|mem| mem.get(1).cloned())
        .unwrap_or_else(|| t.clone());
    let macs = Macs::term(2 * e * e, std::slice::from_ref(&t))
        + &Macs::term(2 * e * kv.unwrap_or(e), std::slice::from_ref(&s_len))
        + &Macs::term(2 * e, &[t.clone(), s_len]);
    if m.memory {
        desc.insert_str(desc.len() - 1, ", cross");
    }
    let step = StepOp::MultiHeadAttention {
        field: cx.ident.clone(),
        heads: h,
        causal: m.causal,
        dropout: m.dropout,
        memory: m
            .memory_arg()
            .and_then(|(_, v)| v.and_then(|v| cx.value(v))),
        key_lengths: m
            .key_lengths_arg()
            .and_then(|(_, v)| v.and_then(|v| cx.value(v))),
        mask: m.mask_arg().and_then(|(_, v)| v.and_then(|v| cx.value(v))),
        prepared: None,
    };
    (desc, step, Some(cx.field(holder, params, absent)), macs)
}

/// The options of one attention's call.
pub struct MhaEmit {
    pub heads: u64,
    pub causal: bool,
    pub dropout: f64,
    /// The first of its fusion slots (`passes::pack_linear`).
    pub prepared: Option<usize>,
}

/// The runtime's `multi_head_attention`: self-attention, or cross-attention
/// over `memory`, with keys past `key_lengths` masked; in inference with
/// fusion on, its projections' weights prepared once in the fusion cache.
pub fn emit_mha(
    e: &EmitCx,
    field: &Ident,
    o: MhaEmit,
    memory: Option<&Ident>,
    key_lengths: Option<&Ident>,
    mask: Option<&Ident>,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, training, rng) = (e.src, e.x, &e.training, &e.rng);
    let MhaEmit {
        heads,
        causal,
        dropout,
        prepared,
    } = o;
    let fusion_on = &e.fusion_on;
    let cache = match prepared {
        Some(slot) => {
            let slot = usize_lit(slot as u64);
            quote! {
                (#fusion_on && !#training).then_some(#p::MhaCache { fusion: &self.fusion, slot: #slot })
            }
        }
        None => quote!(::core::option::Option::None),
    };
    let f = e.env.field(field);
    let heads = usize_lit(heads);
    let dropout = Literal::f64_unsuffixed(dropout);
    let memory = match memory {
        Some(m) => quote!(::core::option::Option::Some(&#m)),
        None => quote!(::core::option::Option::None),
    };
    let some = |i: Option<&Ident>| match i {
        Some(i) => quote!(::core::option::Option::Some(&#i)),
        None => quote!(::core::option::Option::None),
    };
    let (mask_code, mask) = if key_lengths.is_some() || mask.is_some() {
        let (lens, user) = (some(key_lengths), some(mask));
        (
            quote!(let scores_mask = #p::attention_mask(#user, #lens, #memory.unwrap_or(&#src).dim(1)?)?;),
            quote!(#p::attention_mask_ref(&scores_mask)),
        )
    } else {
        (TokenStream::new(), quote!(::core::option::Option::None))
    };
    let call = quote! {
        #p::multi_head_attention(
            &#src,
            #memory,
            &#f,
            &#p::MhaSpec { heads: #heads, causal: #causal, dropout: #dropout },
            #mask,
            #training,
            ::core::option::Option::Some(#rng),
            #cache,
        )?
    };
    if mask_code.is_empty() {
        quote!(let #x = #call;)
    } else {
        quote!(let #x = { #mask_code #call };)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_names_dividing_head_counts_and_widths() {
        let s = heads_fix(250, 8);
        assert!(
            s.starts_with("write `heads = 10`: 25 features per head"),
            "{s}"
        );
        assert!(s.contains("1, 2, 5, 10, 25, 50, 125, 250"), "{s}");
        assert!(s.ends_with("248 or 256"), "{s}");
        assert_eq!(fmt_ratio(250, 8), "31.25");
        assert_eq!(fmt_ratio(100, 3), "33.33..");
        // Many divisors: a window around the nearest.
        let s = heads_fix(720, 7);
        assert!(s.starts_with("write `heads = 6`"), "{s}");
        assert!(s.contains(".."), "{s}");
    }
}
