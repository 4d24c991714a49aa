//! `Embedding`: integer token ids `[B, T]` to vectors `[B, T, dim]`, rows
//! of a learned `[vocab, dim]` table (PyTorch's `weight`, initialised
//! N(0, 1) with the `padding_idx` row zeroed). Also the rule that keeps ids
//! and floats apart: ids go only into an `Embedding`, and an `Embedding`
//! takes only ids.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use crate::ast::Layer;
use crate::emit::usize_lit;
use crate::infer::{FailKind, Failure};
use crate::infer::{Step, StepResult};
use crate::lower::{Holder, InitIr, StepOp};
use crate::ops::args::Args;
use crate::ops::{Alias, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, Dim};

#[derive(Clone, Debug)]
pub struct Embedding {
    pub vocab: Spanned<u64>,
    pub dim: Spanned<u64>,
    /// The row whose gradient stays zero, normalised (`-1` is `vocab - 1`).
    pub padding_idx: Option<u64>,
}

pub const EMBEDDING: OpDef = OpDef {
    name: "Embedding",
    spellings: &["Embedding", "embedding"],
    aliases: &[Alias::new("Embed", "Flax", "Embedding({args})")],
    positional: &["num_embeddings", "embedding_dim"],
    args: &[
        ArgSpec::new(
            "num_embeddings",
            ArgKind::Count,
            None,
            "the vocabulary: ids run from 0 to `num_embeddings - 1`",
        )
        .aka(&["vocab"]),
        ArgSpec::new(
            "embedding_dim",
            ArgKind::Count,
            None,
            "the length of each id's vector",
        )
        .aka(&["dim"]),
        ArgSpec::new(
            "padding_idx",
            ArgKind::Int,
            Some("none"),
            "an id whose row starts at zero and gets no gradient; negative counts from the end",
        ),
    ],
    resolve: resolve_embedding,
};

fn resolve_embedding(a: &Args, layer: &Layer) -> Option<Op> {
    let vocab = a.uint("num_embeddings", 1, None);
    let dim = a.uint("embedding_dim", 1, None);
    let pad = match a.get("padding_idx") {
        None => None,
        Some(_) => Some(a.int("padding_idx", None)?),
    };
    let (vocab, dim) = (vocab?, dim?);
    let (Some(vocab), Some(dim)) = (vocab, dim) else {
        a.missing(format!(
            "`Embedding` needs its vocabulary size and vector length\nhelp: write `{}(vocab, dim)`, \
             e.g. `{}(1000, 64)`",
            layer.op, layer.op
        ));
        return None;
    };
    let padding_idx = match pad {
        None => None,
        Some(p) => {
            let v = vocab.value as i64;
            if p.value >= v || p.value < -v {
                a.cx.error(
                    p.span,
                    format!(
                        "`padding_idx` must be an id of the vocabulary, in -{v}..={} (as in PyTorch), found {}\n\
                         help: write {}, the vocabulary's last id, or `padding_idx = 0`",
                        v - 1,
                        p.value,
                        a.get("padding_idx")
                            .map_or(format!("`{}`", v - 1), |w| a.edit("padding_idx", w, v - 1))
                    ),
                );
                return None;
            }
            Some(if p.value < 0 { p.value + v } else { p.value } as u64)
        }
    };
    Some(Op::Embedding(Embedding {
        vocab,
        dim,
        padding_idx,
    }))
}

/// Ids go only into an `Embedding`, and an `Embedding` takes only ids.
/// `ids` tells whether the layer's input holds token ids.
pub fn check_ids(cx: &Step, op: &Op, ids: bool) -> Result<(), Failure> {
    let is_embedding = matches!(op, Op::Embedding(_));
    if ids && !is_embedding {
        let mut f = cx.fail(
            FailKind::Other,
            cx.layer.span,
            format!(
                "`{}` works on floats, but {} holds integer token ids {}",
                cx.name(),
                cx.prev,
                fmt_shape(cx.input)
            ),
        );
        f.help.push(format!(
            "turn the ids into vectors first: `Embedding(vocab, dim) -> {}`",
            cx.name()
        ));
        return Err(f);
    }
    if !ids && is_embedding {
        let mut f = cx.fail(
            FailKind::Other,
            cx.layer.span,
            format!(
                "`{}` (Embedding) looks up integer token ids, but {} gives floats {}",
                cx.name(),
                cx.prev,
                fmt_shape(cx.input)
            ),
        );
        f.help.push(if cx.prev == "the input" {
            "declare the input as ids with their dtype after the shape, e.g. `ids: [B, T] u32`"
                .to_string()
        } else {
            "an `Embedding` reads ids straight from an input declared as ids (`ids: [B, T] u32`); \
             for floats use `Linear(dim)`"
                .to_string()
        });
        return Err(f);
    }
    Ok(())
}

/// `[..]` ids -> `[.., dim]`.
pub fn infer_embedding(cx: &Step, e: &Embedding) -> StepResult {
    let mut out = cx.input.clone();
    out.push(Dim::Known(e.dim.value));
    let trace = cx.reshape_trace(&out);
    Ok((out, Some(trace)))
}

/// `weight` `[vocab, dim]`, N(0, 1) with the padding row zeroed; no MACs.
pub fn lower_embedding(cx: &LowerCx, e: &Embedding) -> Lowered {
    let (vocab, dim) = (e.vocab.value, e.dim.value);
    let params = vec![cx.param(
        "weight",
        vec![vocab, dim],
        InitIr::Embedding {
            padding_idx: e.padding_idx,
        },
    )];
    let desc = match e.padding_idx {
        Some(p) => format!("Embedding({vocab}, {dim}, padding_idx {p})"),
        None => format!("Embedding({vocab}, {dim})"),
    };
    let step = StepOp::Embedding {
        field: cx.ident.clone(),
        label: cx.layer.label.clone(),
        padding_idx: e.padding_idx,
    };
    (
        desc,
        step,
        Some(cx.field(Holder::new("EmbeddingParams"), params, vec![])),
        Macs::zero(),
    )
}

pub fn emit_embedding(
    e: &EmitCx,
    field: &Ident,
    label: &str,
    padding_idx: Option<u64>,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, env, training) = (e.src, e.x, e.env, &e.training);
    let f = env.field(field);
    let pad = match padding_idx {
        Some(i) => {
            let i = usize_lit(i);
            quote!(::core::option::Option::Some(#i))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        let #x = #p::embedding(#label, &#src, &#p::param(&#f.weight, #training), #pad)?;
    }
}
