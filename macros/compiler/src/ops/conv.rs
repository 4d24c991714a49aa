//! Convolutions with weights: `Conv2d` (cross-correlation, per-side
//! padding, `same`) and `ConvTranspose2d` (its gradient, to upsample).

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use crate::ast::Layer;
use crate::emit::usize_lit;
use crate::infer::{pair_text, Overrides, Step, StepResult};
use crate::infer::{FailKind, Failure};
use crate::lower::{Fold, Holder, InitIr, Prepared, StepOp};
use crate::ops::activation::Activation;
use crate::ops::args::{Args, WeightInit};
use crate::ops::window::spatial;
use crate::ops::{pair_tokens, Alias, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, gcd, Dim};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// `(top, bottom)`, `(left, right)`.
    Explicit { h: (u64, u64), w: (u64, u64) },
    /// `padding = same`: the output keeps the input's size (stride 1).
    Same,
}

#[derive(Clone, Debug)]
pub struct Conv2d {
    pub in_ch: Option<Spanned<u64>>,
    pub out_ch: Spanned<u64>,
    pub kernel: Spanned<(u64, u64)>,
    pub stride: Spanned<(u64, u64)>,
    pub padding: Spanned<Padding>,
    pub dilation: Spanned<(u64, u64)>,
    pub groups: Spanned<u64>,
    pub bias: bool,
    pub init: WeightInit,
}

#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    pub in_ch: Option<Spanned<u64>>,
    pub out_ch: Spanned<u64>,
    pub kernel: Spanned<(u64, u64)>,
    pub stride: Spanned<(u64, u64)>,
    pub padding: Spanned<(u64, u64)>,
    pub output_padding: Spanned<(u64, u64)>,
    pub dilation: Spanned<(u64, u64)>,
    pub groups: Spanned<u64>,
    pub bias: bool,
}

const OUT_CHANNELS: ArgSpec = ArgSpec::new(
    "out_channels",
    ArgKind::Channels,
    None,
    "`C_out`, or `C_in -> C_out` to check the input's channels",
)
.aka(&["out", "channels"]);
const KERNEL: ArgSpec = ArgSpec::new(
    "kernel",
    ArgKind::Pair,
    None,
    "the kernel, `k` or `(kh, kw)`",
)
.aka(&["kernel_size"]);
const STRIDE: ArgSpec = ArgSpec::new("stride", ArgKind::Pair, Some("1"), "the step of the kernel");
const DILATION: ArgSpec = ArgSpec::new(
    "dilation",
    ArgKind::Pair,
    Some("1"),
    "the spacing between kernel taps",
);
const GROUPS: ArgSpec = ArgSpec::new(
    "groups",
    ArgKind::Count,
    Some("1"),
    "blocked connections; divides `C_in` and `C_out`",
);
const BIAS: ArgSpec = ArgSpec::new("bias", ArgKind::Bool, Some("true"), "learn a bias");

pub const CONV2D: OpDef = OpDef {
    name: "Conv2d",
    spellings: &["Conv2d", "conv2d", "conv"],
    aliases: &[
        Alias::new("Convolution2D", "Keras", "Conv2d({args})"),
        Alias::new("Conv", "Flax", "Conv2d({args})"),
    ],
    positional: &["out_channels", "kernel"],
    args: &[
        ArgSpec::new(
            "init",
            ArgKind::Init,
            Some("default"),
            "the weight's initialisation",
        ),
        OUT_CHANNELS,
        KERNEL,
        STRIDE,
        ArgSpec::new(
            "padding",
            ArgKind::Padding,
            Some("0"),
            "zeros added around the input, per side or `same`",
        ),
        DILATION,
        GROUPS,
        BIAS,
    ],
    resolve: resolve_conv2d,
};

pub const CONV_TRANSPOSE2D: OpDef = OpDef {
    name: "ConvTranspose2d",
    spellings: &["ConvTranspose2d", "conv_transpose2d", "up_conv"],
    aliases: &[
        Alias::new("Conv2DTranspose", "Keras", "ConvTranspose2d({args})"),
        Alias::new("ConvTranspose", "Flax", "ConvTranspose2d({args})"),
        Alias::new("Deconvolution2D", "Keras", "ConvTranspose2d({args})"),
    ],
    positional: &["out_channels", "kernel"],
    args: &[
        OUT_CHANNELS,
        KERNEL,
        STRIDE,
        ArgSpec::new(
            "padding",
            ArgKind::Pair,
            Some("0"),
            "`dilation*(k-1) - padding` zeros around the input",
        ),
        ArgSpec::new(
            "output_padding",
            ArgKind::Pair,
            Some("0"),
            "added to one side of the output; below the stride or the dilation",
        ),
        DILATION,
        GROUPS,
        BIAS,
    ],
    resolve: resolve_conv_transpose2d,
};

fn resolve_conv2d(a: &Args, _layer: &Layer) -> Option<Op> {
    // Every argument is checked before any error returns, so all
    // of a layer's mistakes are reported together.
    let channels = a.channels("out_channels");
    let kernel = a.pair("kernel", 1, None);
    let stride = a.pair_or("stride", 1, (1, 1));
    let dilation = a.pair_or("dilation", 1, (1, 1));
    let padding = a.padding();
    let groups = a.uint_or("groups", 1, 1);
    let bias = a.boolean("bias", true);
    let init = a.weight_init();
    let Some(kernel) = kernel? else {
        a.missing("`Conv2d` needs a kernel size\nhelp: write `kernel = 3` or `kernel = (3, 5)`");
        return None;
    };
    let ((in_ch, out_ch), stride, dilation) = (channels?, stride?, dilation?);
    let (padding, groups, bias, init) = (padding?, groups?, bias?, init?);
    Some(Op::Conv2d(Box::new(Conv2d {
        in_ch,
        out_ch,
        kernel,
        stride,
        padding,
        dilation,
        groups,
        bias,
        init,
    })))
}

fn resolve_conv_transpose2d(a: &Args, _layer: &Layer) -> Option<Op> {
    let cx = a.cx;
    let channels = a.channels("out_channels");
    let kernel = a.pair("kernel", 1, None);
    let stride = a.pair_or("stride", 1, (1, 1));
    let padding = a.pair_or("padding", 0, (0, 0));
    let output_padding = a.pair_or("output_padding", 0, (0, 0));
    let dilation = a.pair_or("dilation", 1, (1, 1));
    let groups = a.uint_or("groups", 1, 1);
    let bias = a.boolean("bias", true);
    let Some(kernel) = kernel? else {
        a.missing("`ConvTranspose2d` needs a kernel size\nhelp: write `kernel = 2`");
        return None;
    };
    let ((in_ch, out_ch), stride, dilation) = (channels?, stride?, dilation?);
    let output_padding = output_padding?;
    let (op_, s_, d_) = (output_padding.value, stride.value, dilation.value);
    if (op_.0 >= s_.0 && op_.0 >= d_.0) || (op_.1 >= s_.1 && op_.1 >= d_.1) {
        cx.error(
            output_padding.span,
            format!(
                "`output_padding` must be smaller than the stride or the dilation (as in PyTorch): \
                 output_padding {} with stride {} and dilation {}\nhelp: write {}, the largest allowed",
                pair_text(op_),
                pair_text(s_),
                pair_text(d_),
                {
                    let most = (
                        s_.0.max(d_.0).saturating_sub(1).min(op_.0),
                        s_.1.max(d_.1).saturating_sub(1).min(op_.1),
                    );
                    let text = if most.0 == most.1 {
                        most.0.to_string()
                    } else {
                        format!("({}, {})", most.0, most.1)
                    };
                    a.get("output_padding")
                        .map_or(format!("`output_padding = {text}`"), |v| {
                            a.edit("output_padding", v, &text)
                        })
                }
            ),
        );
        return None;
    }
    Some(Op::ConvTranspose2d(Box::new(ConvTranspose2d {
        in_ch,
        out_ch,
        kernel,
        stride,
        padding: padding?,
        output_padding,
        dilation,
        groups: groups?,
        bias: bias?,
    })))
}

/// The resolved padding of a convolution, overrides applied:
/// `((top, bottom), (left, right))`.
pub fn conv_padding(c: &Conv2d, index: usize, ov: Overrides) -> ((u64, u64), (u64, u64)) {
    if let Some((i, p)) = ov.padding {
        if i == index {
            return ((p, p), (p, p));
        }
    }
    match c.padding.value {
        Padding::Explicit { h, w } => (h, w),
        Padding::Same => (
            crate::shape::same_padding(c.kernel.value.0, c.dilation.value.0),
            crate::shape::same_padding(c.kernel.value.1, c.dilation.value.1),
        ),
    }
}

/// The input channels a convolution (plain or transposed) takes: the
/// incoming dim 1, checked against an explicit `in -> out`, with `groups`
/// dividing both sides.
fn conv_channels(
    cx: &Step,
    op: &str,
    in_ch: Option<Spanned<u64>>,
    out_ch: u64,
    groups: Spanned<u64>,
) -> Result<u64, Failure> {
    cx.need_rank(op, 4, "[B, C, H, W]")?;
    let cin = cx.known(1, "number of input channels")?;
    if let Some(written) = in_ch {
        if written.value != cin {
            let mut f = cx.fail(
                FailKind::Mismatch,
                written.span,
                format!(
                    "`{}` expects {} input channels, but {} gives {cin} ({})",
                    cx.name(),
                    written.value,
                    cx.prev,
                    fmt_shape(cx.input)
                ),
            );
            f.help.push(format!(
                "write `{cin} -> {out_ch}`, or just `{out_ch}` to infer the input channels"
            ));
            return Err(f);
        }
    }
    let g = groups.value;
    if cin % g != 0 || !out_ch.is_multiple_of(g) {
        let divisors: Vec<String> = (1..=gcd(cin, out_ch))
            .filter(|d| cin % d == 0 && out_ch.is_multiple_of(*d))
            .map(|d| d.to_string())
            .collect();
        return Err(cx.fail(
            FailKind::Other,
            groups.span,
            format!(
                "`{}`: groups = {g} must divide both the input channels and the output channels, \
                 but {cin} % {g} = {} and {out_ch} % {g} = {}\nhelp: write `groups = {}` (groups that divide both: {})",
                cx.name(),
                cin % g,
                out_ch % g,
                divisors
                    .iter()
                    // The divisor nearest the groups written (the smaller on a tie).
                    .min_by_key(|d| d.parse::<u64>().map_or(u64::MAX, |d| d.abs_diff(g)))
                    .map_or("1", String::as_str),
                divisors.join(", ")
            ),
        ));
    }
    Ok(cin)
}

pub fn infer_conv2d(cx: &Step, c: &Conv2d) -> StepResult {
    conv_channels(cx, "Conv2d", c.in_ch, c.out_ch.value, c.groups)?;
    let cout = c.out_ch.value;
    if c.padding.value == Padding::Same && c.stride.value != (1, 1) {
        return Err(cx.fail(
            FailKind::Other,
            c.padding.span,
            format!(
                "`{}`: padding = same needs stride 1 (as in PyTorch), but stride is {}\n\
                 help: write the padding as a number, e.g. `padding = {}`",
                cx.name(),
                pair_text(c.stride.value),
                (c.kernel.value.0 - 1) * c.dilation.value.0 / 2
            ),
        ));
    }
    let (ph, pw) = conv_padding(c, cx.index, cx.ov);
    let axes = [
        (
            "H",
            2,
            c.kernel.value.0,
            c.stride.value.0,
            ph,
            c.dilation.value.0,
            false,
        ),
        (
            "W",
            3,
            c.kernel.value.1,
            c.stride.value.1,
            pw,
            c.dilation.value.1,
            false,
        ),
    ];
    let (spatial, trace) = spatial(cx, &axes, c.kernel.span)?;
    let mut out = vec![cx.input[0].clone(), Dim::Known(cout)];
    out.extend(spatial);
    Ok((out, trace))
}

/// `H_out = (H - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1`.
pub fn infer_conv_transpose2d(cx: &Step, c: &ConvTranspose2d) -> StepResult {
    conv_channels(cx, "ConvTranspose2d", c.in_ch, c.out_ch.value, c.groups)?;
    let cout = c.out_ch.value;
    let mut out = vec![cx.input[0].clone(), Dim::Known(cout)];
    let mut lines = Vec::new();
    for (axis, name) in [(2usize, "H"), (3, "W")] {
        let pick = |p: (u64, u64)| if axis == 2 { p.0 } else { p.1 };
        let (s, p, op, d, k) = (
            pick(c.stride.value),
            pick(c.padding.value),
            pick(c.output_padding.value),
            pick(c.dilation.value),
            pick(c.kernel.value),
        );
        let add = -(s as i64) - 2 * p as i64 + (d * (k - 1)) as i64 + op as i64 + 1;
        if let Dim::Lin(l) = &cx.input[axis] {
            let n = l.scale(s).shift(add);
            cx.cons.borrow_mut().need_at_least(&n, 1, &cx.why());
            lines.push((
                name,
                format!("({l} - 1)*{s} - 2*{p} + {d}*({k}-1) + {op} + 1 = {n}"),
            ));
            out.push(Dim::Lin(n));
            continue;
        }
        let input = cx.known(axis, name)?;
        let n = (input as i64 - 1) * s as i64 - 2 * p as i64 + (d * (k - 1)) as i64 + op as i64 + 1;
        let text = format!("({input} - 1)*{s} - 2*{p} + {d}*({k}-1) + {op} + 1 = {n}");
        if n <= 0 {
            return Err(cx.fail(
                FailKind::Other,
                c.padding.span,
                format!(
                    "`{}` gives no output along {name}: {name} = {text}\nhelp: use less padding",
                    cx.name()
                ),
            ));
        }
        lines.push((name, text));
        out.push(Dim::Known(n as u64));
    }
    let trace = if lines[0].1 == lines[1].1 {
        format!("{}: H = W = {}", cx.name(), lines[0].1)
    } else {
        format!("{}: H = {}; W = {}", cx.name(), lines[0].1, lines[1].1)
    };
    Ok((out, Some(trace)))
}

/// `weight` `[C_out, C_in/groups, kh, kw]` and `bias` `[C_out]`;
/// `C_in/groups * kh * kw` MACs per output value.
pub fn lower_conv2d(cx: &LowerCx, c: &Conv2d) -> Lowered {
    let (input, output) = (cx.input, cx.output);
    let cin = input[1].known().unwrap_or(0);
    let (kh, kw) = c.kernel.value;
    let g = c.groups.value;
    let cout = c.out_ch.value;
    let fan_in = cin / g * kh * kw;
    let mut params = vec![cx.param(
        "weight",
        vec![cout, cin / g, kh, kw],
        InitIr::Weight {
            fan_in,
            fan_out: cout * kh * kw,
            scheme: c.init,
        },
    )];
    if c.bias {
        params.push(cx.param("bias", vec![cout], InitIr::Bias { fan_in }));
    }
    let absent = if c.bias { vec![] } else { vec!["bias"] };
    let pad = conv_padding(c, cx.index, Overrides::default());
    let mut desc = format!(
        "Conv2d({cin} -> {cout}, kernel {}",
        pair_text(c.kernel.value)
    );
    if c.stride.value != (1, 1) {
        desc += &format!(", stride {}", pair_text(c.stride.value));
    }
    match c.padding.value {
        Padding::Same => desc += ", padding same",
        _ if pad == ((0, 0), (0, 0)) => {}
        _ if pad.0 .0 == pad.0 .1 && pad.1 .0 == pad.1 .1 => {
            desc += &format!(", padding {}", pair_text((pad.0 .0, pad.1 .0)))
        }
        _ => {
            desc += &format!(
                ", padding ({}, {}, {}, {})",
                pad.1 .0, pad.1 .1, pad.0 .0, pad.0 .1
            )
        }
    }
    if c.dilation.value != (1, 1) {
        desc += &format!(", dilation {}", pair_text(c.dilation.value));
    }
    if g != 1 {
        desc += &format!(", groups {g}");
    }
    if !c.bias {
        desc += ", no bias";
    }
    desc += ")";
    let macs = Macs::per_sample(output, fan_in);
    let step = StepOp::Conv2d {
        field: cx.ident.clone(),
        pad,
        stride: c.stride.value,
        dilation: c.dilation.value,
        groups: g,
        out_ch: cout,
        kernel: c.kernel.value,
        bias: c.bias,
        fold: None,
        epilogue: None,
        prepared: None,
    };
    (
        desc,
        step,
        Some(cx.field(Holder::new("Conv2dParams"), params, absent)),
        macs,
    )
}

/// `weight` `[C_in, C_out/groups, kh, kw]` (PyTorch's layout) and `bias`.
pub fn lower_conv_transpose2d(cx: &LowerCx, c: &ConvTranspose2d) -> Lowered {
    let input = cx.input;
    let cin = input[1].known().unwrap_or(0);
    let (kh, kw) = c.kernel.value;
    let (g, cout) = (c.groups.value, c.out_ch.value);
    // PyTorch's fan_in for a transposed conv's weight [Cin, Cout/g, kh, kw]: dim 1 x kernel.
    let fan_in = cout / g * kh * kw;
    let mut params = vec![cx.param(
        "weight",
        vec![cin, cout / g, kh, kw],
        InitIr::Weight {
            fan_in,
            fan_out: cin * kh * kw,
            scheme: WeightInit::Default,
        },
    )];
    if c.bias {
        params.push(cx.param("bias", vec![cout], InitIr::Bias { fan_in }));
    }
    let absent = if c.bias { vec![] } else { vec!["bias"] };
    let mut desc = format!(
        "ConvTranspose2d({cin} -> {cout}, kernel {}",
        pair_text(c.kernel.value)
    );
    for (name, v, default) in [
        ("stride", c.stride.value, (1, 1)),
        ("padding", c.padding.value, (0, 0)),
        ("output_padding", c.output_padding.value, (0, 0)),
        ("dilation", c.dilation.value, (1, 1)),
    ] {
        if v != default {
            desc += &format!(", {name} {}", pair_text(v));
        }
    }
    if g != 1 {
        desc += &format!(", groups {g}");
    }
    desc += ")";
    // Each input pixel meets every kernel tap once: in * (Cout/g * kh * kw) MACs.
    let macs = Macs::per_sample(input, (cout / g) * kh * kw);
    let step = StepOp::ConvTranspose2d {
        field: cx.ident.clone(),
        stride: c.stride.value,
        padding: c.padding.value,
        output_padding: c.output_padding.value,
        dilation: c.dilation.value,
        groups: g,
        bias: c.bias,
    };
    (
        desc,
        step,
        Some(cx.field(Holder::new("Conv2dParams"), params, absent)),
        macs,
    )
}

/// A convolution's options, as the runtime's `Conv2dSpec` takes them.
#[derive(Clone, Copy)]
pub struct ConvGeom {
    pub pad: ((u64, u64), (u64, u64)),
    pub stride: (u64, u64),
    pub dilation: (u64, u64),
    pub groups: u64,
}

/// The runtime's convolution. With a folded batch norm, the folded weights
/// in inference and the two layers as written otherwise; a prepared 3x3
/// convolution takes its weights, prepared once, from the cache in
/// inference (Winograd where chosen).
#[allow(clippy::too_many_arguments)]
pub fn emit_conv2d(
    e: &EmitCx,
    field: &Ident,
    geom: ConvGeom,
    bias: bool,
    fold: Option<&Fold>,
    epilogue: Option<Activation>,
    prepared: Option<Prepared>,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, env) = (e.src, e.x, e.env);
    let (training, fusion_on) = (&e.training, &e.fusion_on);
    let f = env.field(field);
    let weight = quote!(#p::param(&#f.weight, #training));
    let plain_bias = bias.then(|| quote!(#p::param(&#f.bias, #training)));
    let prepare = |slot: usize, sources: Vec<TokenStream>, compute: TokenStream| {
        let slot = usize_lit(slot as u64);
        let call = conv_call(src, x, Weights::Prepared, geom, epilogue);
        quote! {
            let prepared = self.fusion.get_conv(#slot, &[#(#sources),*], || #compute)?;
            #call
        }
    };
    let winograd = prepared.map(|w| usize_lit(w.winograd.code()));
    match (fold, prepared) {
        (None, None) => conv_call(src, x, Weights::Plain(weight, plain_bias), geom, epilogue),
        (None, Some(prepared)) => {
            let mut sources = vec![quote!(&#f.weight)];
            if bias {
                sources.push(quote!(&#f.bias));
            }
            let fast = prepare(
                prepared.slot,
                sources,
                quote!(#p::prepare_params(&#f.weight, &#f.bias, #winograd)),
            );
            let plain = conv_call(src, x, Weights::Plain(weight, plain_bias), geom, epilogue);
            quote! {
                let #x = if #fusion_on && !#training {
                    #fast
                    #x
                } else {
                    #plain
                    #x
                };
            }
        }
        (Some(fold), prepared) => {
            let bn = env.field(&fold.bn);
            let eps = Literal::f64_unsuffixed(fold.eps);
            let momentum = Literal::f64_unsuffixed(fold.momentum);
            let fused = match prepared {
                None => {
                    let weights = crate::ops::norm::folded_weights(field, fold, env);
                    let call = conv_call(
                        src,
                        x,
                        Weights::Plain(quote!(weight), Some(quote!(bias))),
                        geom,
                        epilogue,
                    );
                    quote!(#weights #call)
                }
                Some(prepared) => prepare(
                    prepared.slot,
                    crate::ops::norm::fold_sources(field, fold, env),
                    quote!(#p::prepare_folded(
                        &#f.weight,
                        &#f.bias,
                        &#bn,
                        #eps,
                        #winograd
                    )),
                ),
            };
            let plain = conv_call(src, x, Weights::Plain(weight, plain_bias), geom, None);
            let act = epilogue
                .map(|a| crate::ops::activation::act_code(a, &quote!(#x), x))
                .unwrap_or_default();
            quote! {
                let #x = if #fusion_on && !#training {
                    #fused
                    #x
                } else {
                    #plain
                    let #x = #p::batch_norm(&#x, &#bn, #eps, #momentum, #training)?;
                    #act
                    #x
                };
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn emit_conv_transpose2d(
    e: &EmitCx,
    field: &Ident,
    stride: (u64, u64),
    padding: (u64, u64),
    output_padding: (u64, u64),
    dilation: (u64, u64),
    groups: u64,
    bias: bool,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, env, training) = (e.src, e.x, e.env, &e.training);
    let (st, pd, op, dl) = (
        pair_tokens(stride),
        pair_tokens(padding),
        pair_tokens(output_padding),
        pair_tokens(dilation),
    );
    let g = usize_lit(groups);
    let f = env.field(field);
    let bias = if bias {
        quote!(::core::option::Option::Some(&#p::param(&#f.bias, #training)))
    } else {
        quote!(::core::option::Option::None)
    };
    quote! {
        let #x = #p::conv_transpose2d(
            &#src,
            &#p::param(&#f.weight, #training),
            #bias,
            &#p::ConvTranspose2dSpec { stride: #st, padding: #pd, output_padding: #op, dilation: #dl, groups: #g },
        )?;
    }
}

/// What a convolution call multiplies by.
enum Weights {
    /// A weight and an optional bias, as expressions.
    Plain(TokenStream, Option<TokenStream>),
    /// The `prepared` variable: weights prepared once (Winograd).
    Prepared,
}

/// The runtime's convolution on `src`: any stride, padding, dilation and
/// groups natively, bias and an activation applied in its epilogue.
fn conv_call(
    src: &TokenStream,
    x: &Ident,
    weights: Weights,
    geom: ConvGeom,
    act: Option<Activation>,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let ((top, bottom), (left, right)) = geom.pad;
    let (t, b, l, r) = (
        usize_lit(top),
        usize_lit(bottom),
        usize_lit(left),
        usize_lit(right),
    );
    let (st, dl, g) = (
        pair_tokens(geom.stride),
        pair_tokens(geom.dilation),
        usize_lit(geom.groups),
    );
    let (epilogue, after) = match act.map(|a| (a, crate::ops::activation::epilogue(a))) {
        None => (quote!(None), TokenStream::new()),
        Some((_, Some(epilogue))) => (epilogue, TokenStream::new()),
        // One the convolution cannot apply runs after it.
        Some((a, None)) => (
            quote!(None),
            crate::ops::activation::act_code(a, &quote!(#x), x),
        ),
    };
    let spec = quote!(&#p::Conv2dSpec { stride: #st, padding: ((#t, #b), (#l, #r)), dilation: #dl, groups: #g });
    let call = match weights {
        Weights::Plain(w, bias) => {
            let bias = match bias {
                Some(b) => quote!(::core::option::Option::Some(&#b)),
                None => quote!(::core::option::Option::None),
            };
            quote!(#p::conv2d(&#src, &#w, #bias, #spec, #p::Epilogue::#epilogue))
        }
        Weights::Prepared => {
            quote!(#p::conv2d_prepared(&#src, &prepared, #spec, #p::Epilogue::#epilogue))
        }
    };
    quote! {
        let #x = #call?;
        #after
    }
}

/// The edit that makes a convolution (1-D, 2-D or transposed, `name`)
/// give `want` channels (axis 1): `conv3: Conv2d(64 -> 10, ..)`.
pub fn output_edit(
    label: &str,
    name: &str,
    in_ch: Option<Spanned<u64>>,
    axis: usize,
    want: u64,
) -> Option<String> {
    (axis == 1).then(|| match in_ch {
        Some(i) => format!("write `{label}: {name}({} -> {want}, ..)`", i.value),
        None => format!("write `{label}: {name}({want}, ..)`"),
    })
}
