//! `Dropout`: in training, each value is zeroed with probability `p` and
//! the rest scaled by `1 / (1 - p)`; in inference, the identity.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use crate::ast::Layer;
use crate::infer::{Step, StepResult};
use crate::lower::StepOp;
use crate::ops::args::Args;
use crate::ops::{ArgKind, ArgSpec, EmitCx, Lowered, Macs, OpDef};
use crate::resolve::Op;

pub const DROPOUT: OpDef = OpDef {
    name: "Dropout",
    spellings: &["Dropout", "dropout"],
    aliases: &[],
    positional: &["p"],
    args: &[
        ArgSpec::new(
            "p",
            ArgKind::Number,
            Some("0.5"),
            "the probability of zeroing a value, in [0, 1]",
        ),
        ArgSpec::new(
            "inplace",
            ArgKind::Bool,
            Some("false"),
            "accepted for PyTorch familiarity; no effect",
        ),
    ],
    resolve: resolve_dropout,
};

fn resolve_dropout(a: &Args, _layer: &Layer) -> Option<Op> {
    let p = a.float("p", 0.5, 0.0, 1.0, true);
    a.boolean("inplace", false)?;
    Some(Op::Dropout { p: p?.value })
}

/// The shape goes through.
pub fn infer_dropout(cx: &Step) -> StepResult {
    Ok((cx.input.clone(), None))
}

pub fn lower_dropout(p: f64) -> Lowered {
    (
        format!("Dropout({p})"),
        StepOp::Dropout { p },
        None,
        Macs::zero(),
    )
}

/// The mask is drawn from the network's generator, only in training.
pub fn emit_dropout(e: &EmitCx, rate: f64) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, training, rng) = (e.src, e.x, &e.training, &e.rng);
    let rate = Literal::f64_unsuffixed(rate);
    quote! {
        let #x = if #training {
            #p::dropout(&#src, #rate, #rng)?
        } else {
            #src.clone()
        };
    }
}
