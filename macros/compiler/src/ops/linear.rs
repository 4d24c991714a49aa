//! `Linear`: `y = x W^T + b` over the last dim, any rank >= 2, like
//! `torch.nn.Linear`.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use crate::ast::Layer;
use crate::emit::usize_lit;
use crate::infer::{FailKind, Failure};
use crate::infer::{Step, StepResult};
use crate::lower::{Fold, Holder, InitIr, StepOp};
use crate::ops::activation::Activation;
use crate::ops::args::{Args, WeightInit};
use crate::ops::{Alias, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, Dim};

#[derive(Clone, Debug)]
pub struct Linear {
    pub in_f: Option<Spanned<u64>>,
    pub out_f: Spanned<u64>,
    pub bias: bool,
    pub init: WeightInit,
}

pub const LINEAR: OpDef = OpDef {
    name: "Linear",
    spellings: &["Linear", "linear"],
    aliases: &[
        Alias::new("Dense", "Keras and Flax", "Linear({args})"),
        Alias::new("FullyConnected", "TensorFlow", "Linear({args})"),
    ],
    positional: &["out_features"],
    args: &[
        ArgSpec::new(
            "out_features",
            ArgKind::Channels,
            None,
            "`out`, or `in -> out` to check the input's features",
        ),
        ArgSpec::new("bias", ArgKind::Bool, Some("true"), "learn a bias"),
        ArgSpec::new(
            "init",
            ArgKind::Init,
            Some("default"),
            "the weight's initialisation",
        ),
    ],
    resolve: resolve_linear,
};

fn resolve_linear(a: &Args, _layer: &Layer) -> Option<Op> {
    let init = a.weight_init();
    let (channels, bias) = (a.channels("out_features"), a.boolean("bias", true));
    let ((in_f, out_f), bias) = (channels?, bias?);
    Some(Op::Linear(Linear {
        in_f,
        out_f,
        bias,
        init: init?,
    }))
}

/// `[.., in_features]` -> `[.., out_features]`.
pub fn infer_linear(cx: &Step, l: &Linear) -> StepResult {
    if cx.input.len() < 2 {
        return Err(cx.fail(
            FailKind::Other,
            cx.layer.span,
            format!(
                "`{}` (Linear) needs an input of rank 2 or more [B, .., features], but {} gives {}",
                cx.name(),
                cx.prev,
                fmt_shape(cx.input)
            ),
        ));
    }
    let last = cx.input.len() - 1;
    if let Some(f) = crate::ops::pool1d::length_as_features(cx, last) {
        return Err(f);
    }
    let fin = cx.known(last, "number of input features")?;
    in_features(cx, l.in_f, fin, "Linear", l.out_f.value)?;
    let mut out = cx.input.clone();
    out[last] = Dim::Known(l.out_f.value);
    let trace = cx.reshape_trace(&out);
    Ok((out, Some(trace)))
}

/// The edit that makes a `Linear` give `want` features (its last axis):
/// `fc: Linear(84 -> 10)`.
pub fn output_edit(label: &str, l: &Linear, axis: usize, rank: usize, want: u64) -> Option<String> {
    (axis + 1 == rank).then(|| match l.in_f {
        Some(i) => format!("write `{label}: Linear({} -> {want})`", i.value),
        None => format!("write `{label}: Linear({want})`"),
    })
}

/// A written input size (`Linear(784 -> 10)`, `LSTM(8 -> 32)`) against
/// the `fin` features the input has: the mismatch at the written number,
/// with both working forms of `op`.
pub fn in_features(
    cx: &Step,
    written: Option<Spanned<u64>>,
    fin: u64,
    op: &str,
    out: u64,
) -> Result<(), Failure> {
    let Some(written) = written.filter(|w| w.value != fin) else {
        return Ok(());
    };
    let mut f = cx.fail(
        FailKind::Mismatch,
        written.span,
        format!(
            "`{}` expects {} input features, but {} gives {fin} ({})",
            cx.name(),
            written.value,
            cx.prev,
            fmt_shape(cx.input)
        ),
    );
    // [B, 512, 1, 1] into a `Linear(512 -> ..)`: the features are the
    // channels, and a `flatten` is missing.
    let channels_are_features = cx.input.len() >= 3
        && cx.input.get(1) == Some(&Dim::Known(written.value))
        && cx.input[2..].iter().all(|d| *d == Dim::Known(1));
    if let (true, Some(name)) = (channels_are_features, cx.layer.name.as_ref()) {
        f.help.push(format!(
            "flatten the {} first: write `flatten -> {name}` for `{name}`",
            fmt_shape(cx.input)
        ));
    }
    f.help.push(format!(
        "write `{op}({fin} -> {out})`, or `{op}({out})` to infer it"
    ));
    Err(f)
}

/// `weight` `[out, in]` and `bias` `[out]`; `in` MACs per output value.
pub fn lower_linear(cx: &LowerCx, l: &Linear) -> Lowered {
    let (input, output) = (cx.input, cx.output);
    let fin = input.last().and_then(Dim::known).unwrap_or(0);
    let fout = l.out_f.value;
    let mut params = vec![cx.param(
        "weight",
        vec![fout, fin],
        InitIr::Weight {
            fan_in: fin,
            fan_out: fout,
            scheme: l.init,
        },
    )];
    if l.bias {
        params.push(cx.param("bias", vec![fout], InitIr::Bias { fan_in: fin }));
    }
    let absent = if l.bias { vec![] } else { vec!["bias"] };
    let desc = format!(
        "Linear({fin} -> {fout}{})",
        if l.bias { "" } else { ", no bias" }
    );
    let macs = Macs::per_sample(output, fin);
    let step = StepOp::Linear {
        field: cx.ident.clone(),
        bias: l.bias,
        rank: input.len(),
        fold: None,
        prepared: None,
        epilogue: None,
    };
    (
        desc,
        step,
        Some(cx.field(Holder::new("LinearParams"), params, absent)),
        macs,
    )
}

/// A matmul (broadcast over the leading dims above rank 2) and the bias; a
/// folded batch norm's weights in inference, or the weights prepared once
/// (packed for the matrix kernel) in the fusion cache, with a fused
/// activation applied by the kernel (and after the product otherwise).
pub fn emit_linear(
    e: &EmitCx,
    field: &Ident,
    bias: bool,
    rank: usize,
    fold: Option<&Fold>,
    (prepared, epilogue): (Option<usize>, Option<Activation>),
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, env) = (e.src, e.x, e.env);
    let (training, fusion_on) = (&e.training, &e.fusion_on);
    let matmul = |w: TokenStream| {
        if rank == 2 {
            quote!(let #x = #src.matmul(&#w.t()?)?;)
        } else {
            quote!(let #x = #src.broadcast_matmul(&#w.t()?)?;)
        }
    };
    let f = env.field(field);
    // `linear` runs the packed kernel in inference where it pays, candle's
    // matmul otherwise (and whenever a gradient is tracked).
    let b = if bias {
        quote!(::core::option::Option::Some(&#p::param(&#f.bias, #training)))
    } else {
        quote!(::core::option::Option::None)
    };
    let plain = quote!(let #x = #p::linear(&#src, &#p::param(&#f.weight, #training), #b)?;);
    match fold {
        None => match prepared {
            None => plain,
            Some(slot) => {
                let slot = usize_lit(slot as u64);
                let mut sources = vec![quote!(&#f.weight)];
                if bias {
                    sources.push(quote!(&#f.bias));
                }
                let after = epilogue
                    .map(|a| crate::ops::activation::act_code(a, &quote!(#x), x))
                    .unwrap_or_default();
                // The kernel applies the activation where it has it as an
                // epilogue (all `activation_into_linear` moves); otherwise
                // it runs after the product, as in training.
                let (act, fast_after) = match epilogue.map(crate::ops::activation::epilogue) {
                    Some(Some(act)) => (act, TokenStream::new()),
                    Some(None) => (quote!(None), after.clone()),
                    None => (quote!(None), TokenStream::new()),
                };
                let call = quote!(#p::linear_prepared(&#src, &prepared, #p::Epilogue::#act)?);
                let fast = if fast_after.is_empty() {
                    call
                } else {
                    quote!(let #x = #call; #fast_after #x)
                };
                quote! {
                    let #x = if #fusion_on && !#training {
                        let prepared = self.fusion.get_linear(#slot, &[#(#sources),*], || {
                            ::core::result::Result::Ok(#p::prepare_linear_params(&#f.weight, &#f.bias))
                        })?;
                        #fast
                    } else {
                        #plain
                        #after
                        #x
                    };
                }
            }
        },
        Some(fold) => {
            let bn = env.field(&fold.bn);
            let eps = Literal::f64_unsuffixed(fold.eps);
            let momentum = Literal::f64_unsuffixed(fold.momentum);
            let weights = crate::ops::norm::folded_weights(field, fold, env);
            let mm = matmul(quote!(weight));
            quote! {
                let #x = if #fusion_on && !#training {
                    #weights
                    #mm
                    #x.broadcast_add(&bias)?
                } else {
                    #plain
                    #p::batch_norm(&#x, &#bn, #eps, #momentum, #training)?
                };
            }
        }
    }
}
