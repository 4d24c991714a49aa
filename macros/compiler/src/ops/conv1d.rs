//! `Conv1d`: convolution along time over `[B, C, T]`, with PyTorch's
//! stride, padding (a number, `(left, right)`, `same`, `valid`), dilation
//! and groups, and a causal mode that pads `dilation * (k - 1)` on the left
//! only, so that no output sees a later input. Also the summary's notes on
//! time: each conv stack's receptive field and whether any output sees the
//! future.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use crate::ast::{Layer, Value};
use crate::emit::usize_lit;
use crate::infer::{FailKind, Failure};
use crate::infer::{Step, StepResult};
use crate::lower::{FieldKind, Holder, InitIr, NetIr, Segment, StepOp};
use crate::ops::args::{Args, WeightInit};
use crate::ops::window::spatial;
use crate::ops::{Alias, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, gcd, same_padding, Dim};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pad1d {
    /// `(left, right)`.
    Explicit(u64, u64),
    /// `padding = same`: the output keeps the input's length (stride 1).
    Same,
}

#[derive(Clone, Debug)]
pub struct Conv1d {
    pub in_ch: Option<Spanned<u64>>,
    pub out_ch: Spanned<u64>,
    pub kernel: Spanned<u64>,
    pub stride: Spanned<u64>,
    pub padding: Spanned<Pad1d>,
    pub dilation: Spanned<u64>,
    pub groups: Spanned<u64>,
    pub bias: bool,
    /// `causal = true`: left padding `dilation * (k - 1)`, none on the right.
    pub causal: bool,
    pub init: WeightInit,
}

impl Conv1d {
    /// The padding it runs with, `(left, right)`.
    pub fn pad(&self) -> (u64, u64) {
        let (k, d) = (self.kernel.value, self.dilation.value);
        if self.causal {
            return (d * (k - 1), 0);
        }
        match self.padding.value {
            Pad1d::Explicit(l, r) => (l, r),
            Pad1d::Same => same_padding(k, d),
        }
    }
}

pub const CONV1D: OpDef = OpDef {
    name: "Conv1d",
    spellings: &["Conv1d", "conv1d"],
    aliases: &[Alias::new("Convolution1D", "Keras", "Conv1d({args})")],
    positional: &["out_channels", "kernel"],
    args: &[
        ArgSpec::new(
            "out_channels",
            ArgKind::Channels,
            None,
            "`C_out`, or `C_in -> C_out` to check the input's channels",
        )
        .aka(&["out", "channels"]),
        ArgSpec::new("kernel", ArgKind::Count, None, "the kernel length `k`").aka(&["kernel_size"]),
        ArgSpec::new(
            "stride",
            ArgKind::Count,
            Some("1"),
            "the step of the kernel",
        ),
        ArgSpec::new(
            "padding",
            ArgKind::Padding,
            Some("0"),
            "zeros on both ends, `(left, right)`, `same` or `valid`",
        ),
        ArgSpec::new(
            "dilation",
            ArgKind::Count,
            Some("1"),
            "the spacing between kernel taps",
        ),
        ArgSpec::new(
            "groups",
            ArgKind::Count,
            Some("1"),
            "blocked connections; divides `C_in` and `C_out`",
        ),
        ArgSpec::new("bias", ArgKind::Bool, Some("true"), "learn a bias"),
        ArgSpec::new(
            "causal",
            ArgKind::Bool,
            Some("false"),
            "pad `dilation*(k-1)` on the left only: no output sees a later input",
        ),
        ArgSpec::new(
            "init",
            ArgKind::Init,
            Some("default"),
            "the weight's initialisation",
        ),
    ],
    resolve: resolve_conv1d,
};

/// `padding`: `n`, `(left, right)`, `same` or `valid`.
fn padding(a: &Args) -> Option<Spanned<Pad1d>> {
    let Some(v) = a.get("padding") else {
        return Some(Spanned {
            value: Pad1d::Explicit(0, 0),
            span: a.whole,
            written: false,
        });
    };
    let value = match v {
        Value::Ident(i) if i == "same" => Pad1d::Same,
        Value::Ident(i) if i == "valid" => Pad1d::Explicit(0, 0),
        Value::Int(..) => {
            let n = a.uint_value("padding", 0, v)?;
            Pad1d::Explicit(n, n)
        }
        Value::Tuple(items, _) if items.len() == 2 => {
            let l = a.uint_value("padding", 0, &items[0]);
            let r = a.uint_value("padding", 0, &items[1]);
            Pad1d::Explicit(l?, r?)
        }
        other => {
            a.wrong_kind(
                "padding",
                "an integer, `(left, right)`, `same` or `valid`",
                other,
            );
            return None;
        }
    };
    Some(Spanned {
        value,
        span: v.span(),
        written: true,
    })
}

fn resolve_conv1d(a: &Args, _layer: &Layer) -> Option<Op> {
    let cx = a.cx;
    let channels = a.channels("out_channels");
    let kernel = a.uint("kernel", 1, None);
    let stride = a.uint_or("stride", 1, 1);
    let dilation = a.uint_or("dilation", 1, 1);
    let padding = padding(a);
    let groups = a.uint_or("groups", 1, 1);
    let bias = a.boolean("bias", true);
    let causal = a.boolean("causal", false);
    let init = a.weight_init();
    let Some(kernel) = kernel? else {
        a.missing("`Conv1d` needs a kernel size\nhelp: write `kernel = 3`");
        return None;
    };
    let ((in_ch, out_ch), stride, dilation) = (channels?, stride?, dilation?);
    let (padding, groups, bias, causal, init) = (padding?, groups?, bias?, causal?, init?);
    if causal && padding.written {
        let left = dilation.value * (kernel.value - 1);
        let (k, d) = (kernel.value, dilation.value);
        match padding.value {
            // The padding a causal convolution has anyway.
            Pad1d::Explicit(l, 0) if l == left => {}
            Pad1d::Explicit(_, 0) => {
                cx.error(
                    padding.span,
                    format!(
                        "a causal `Conv1d` pads dilation*(k-1) = {d}*({k}-1) = {left} on the left by \
                         itself; the padding written here disagrees\nhelp: remove `padding`"
                    ),
                );
                return None;
            }
            p => {
                let (right, what) = match p {
                    Pad1d::Explicit(_, r) => (r, "pads"),
                    Pad1d::Same => (same_padding(k, d).1, "pads"),
                };
                cx.error(
                    padding.span,
                    format!(
                        "this padding would let a causal `Conv1d` see the future: it {what} {right} on the \
                         right, so output t reads inputs up to t + {right}\n\
                         help: remove `padding`; `causal = true` pads dilation*(k-1) = {d}*({k}-1) = {left} \
                         on the left only"
                    ),
                );
                return None;
            }
        }
    }
    Some(Op::Conv1d(Box::new(Conv1d {
        in_ch,
        out_ch,
        kernel,
        stride,
        padding,
        dilation,
        groups,
        bias,
        causal,
        init,
    })))
}

/// The channels a 1-D op reads from dim 1 of `[B, C, T]`, checked against
/// the written `in -> out`; an input that looks time-first (`[B, T, C]`)
/// gets the transpose as the fix.
pub fn channels_1d(cx: &Step, op: &str, written: Option<Spanned<u64>>) -> Result<u64, Failure> {
    cx.need_rank(op, 3, "[B, C, T]")?;
    let transpose_help = |c: u64| {
        format!(
            "the input looks time-first ([B, T, C]); `Transpose(1, 2)` before `{}` gives {}",
            cx.name(),
            fmt_shape(&[cx.input[0].clone(), Dim::Known(c), cx.input[1].clone()])
        )
    };
    let cin = match &cx.input[1] {
        Dim::Known(n) => *n,
        s => {
            let mut f = cx.fail(
                FailKind::Other,
                cx.layer.span,
                format!(
                    "`{}` ({op}) reads channels from dim 1 of [B, C, T], but dim 1 of {} is `{s}`, a length \
                     only the input decides",
                    cx.name(),
                    fmt_shape(cx.input)
                ),
            );
            match &cx.input[2] {
                Dim::Known(c) => f.help.push(transpose_help(*c)),
                _ => f.help.push(
                    "declare the channels as a number in the input shape, e.g. `[B, 8, T]`"
                        .to_string(),
                ),
            }
            return Err(f);
        }
    };
    if let Some(w) = written {
        if w.value != cin {
            let mut f = cx.fail(
                FailKind::Mismatch,
                w.span,
                format!(
                    "`{}` expects {} input channels, but {} gives {cin} ({}): channels are dim 1 of [B, C, T]",
                    cx.name(),
                    w.value,
                    cx.prev,
                    fmt_shape(cx.input)
                ),
            );
            if cx.input[2] == Dim::Known(w.value) {
                f.help.push(transpose_help(w.value));
            }
            f.help.push(format!(
                "write `{cin} -> ..` as the input channels, or only the output channels to infer them"
            ));
            return Err(f);
        }
    }
    Ok(cin)
}

/// `[B, C_in, T]` -> `[B, C_out, T_out]`,
/// `T_out = floor((T + left + right - dilation*(k-1) - 1) / stride) + 1`.
pub fn infer_conv1d(cx: &Step, c: &Conv1d) -> StepResult {
    let cin = channels_1d(cx, "Conv1d", c.in_ch)?;
    let (cout, g) = (c.out_ch.value, c.groups.value);
    if cin % g != 0 || cout % g != 0 {
        let divisors: Vec<String> = (1..=gcd(cin, cout))
            .filter(|d| cin % d == 0 && cout % d == 0)
            .map(|d| d.to_string())
            .collect();
        return Err(cx.fail(
            FailKind::Other,
            c.groups.span,
            format!(
                "`{}`: groups = {g} must divide both the input channels and the output channels, \
                 but {cin} % {g} = {} and {cout} % {g} = {}\nhelp: write `groups = {}` (groups that divide both: {})",
                cx.name(),
                cin % g,
                cout % g,
                divisors
                    .iter()
                    // The divisor nearest the groups written (the smaller on a tie).
                    .min_by_key(|d| d.parse::<u64>().map_or(u64::MAX, |d| d.abs_diff(g)))
                    .map_or("1", String::as_str),
                divisors.join(", ")
            ),
        ));
    }
    if c.padding.value == Pad1d::Same && c.stride.value != 1 {
        return Err(cx.fail(
            FailKind::Other,
            c.padding.span,
            format!(
                "`{}`: padding = same needs stride 1 (as in PyTorch), but stride is {}\n\
                 help: write the padding as a number, e.g. `padding = {}`",
                cx.name(),
                c.stride.value,
                (c.kernel.value - 1) * c.dilation.value / 2
            ),
        ));
    }
    let axes = [(
        "T",
        2,
        c.kernel.value,
        c.stride.value,
        c.pad(),
        c.dilation.value,
        false,
    )];
    let (time, trace) = spatial(cx, &axes, c.kernel.span)?;
    let mut out = vec![cx.input[0].clone(), Dim::Known(cout)];
    out.extend(time);
    Ok((out, trace))
}

/// `weight` `[C_out, C_in/groups, k]`, `bias` `[C_out]`; `C_in/groups * k`
/// MACs per output value.
pub fn lower_conv1d(cx: &LowerCx, c: &Conv1d) -> Lowered {
    let cin = cx.input[1].known().unwrap_or(0);
    let (k, g, cout) = (c.kernel.value, c.groups.value, c.out_ch.value);
    let fan_in = cin / g * k;
    let mut params = vec![cx.param(
        "weight",
        vec![cout, cin / g, k],
        InitIr::Weight {
            fan_in,
            fan_out: cout * k,
            scheme: c.init,
        },
    )];
    if c.bias {
        params.push(cx.param("bias", vec![cout], InitIr::Bias { fan_in }));
    }
    let absent = if c.bias { vec![] } else { vec!["bias"] };
    let pad = c.pad();
    let mut desc = format!("Conv1d({cin} -> {cout}, kernel {k}");
    if c.stride.value != 1 {
        desc += &format!(", stride {}", c.stride.value);
    }
    match (c.causal, c.padding.value) {
        (true, _) => desc += ", causal",
        (false, Pad1d::Same) => desc += ", padding same",
        _ if pad == (0, 0) => {}
        _ if pad.0 == pad.1 => desc += &format!(", padding {}", pad.0),
        _ => desc += &format!(", padding ({}, {})", pad.0, pad.1),
    }
    if c.dilation.value != 1 {
        desc += &format!(", dilation {}", c.dilation.value);
    }
    if g != 1 {
        desc += &format!(", groups {g}");
    }
    if !c.bias {
        desc += ", no bias";
    }
    desc += ")";
    let macs = Macs::per_sample(cx.output, fan_in);
    let step = StepOp::Conv1d {
        field: cx.ident.clone(),
        kernel: k,
        pad,
        stride: c.stride.value,
        dilation: c.dilation.value,
        groups: g,
        bias: c.bias,
        causal: c.causal,
    };
    (
        desc,
        step,
        Some(cx.field(Holder::new("Conv2dParams"), params, absent)),
        macs,
    )
}

#[allow(clippy::too_many_arguments)]
pub fn emit_conv1d(
    e: &EmitCx,
    field: &Ident,
    pad: (u64, u64),
    stride: u64,
    dilation: u64,
    groups: u64,
    bias: bool,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, env, training) = (e.src, e.x, e.env, &e.training);
    let f = env.field(field);
    let bias = if bias {
        quote!(::core::option::Option::Some(&#p::param(&#f.bias, #training)))
    } else {
        quote!(::core::option::Option::None)
    };
    let (l, r) = (usize_lit(pad.0), usize_lit(pad.1));
    let (s, d, g) = (usize_lit(stride), usize_lit(dilation), usize_lit(groups));
    quote! {
        let #x = #p::conv1d(
            &#src,
            &#p::param(&#f.weight, #training),
            #bias,
            &#p::Conv1dSpec { stride: #s, padding: (#l, #r), dilation: #d, groups: #g },
            #p::Epilogue::None,
        )?;
    }
}

/// What one value's time steps see of the input's, counted through the
/// 1-D convolutions and pools: how many input steps one output step
/// reads (`field`), how far apart neighbouring steps are in input steps
/// (`jump`), and how many steps past its own an output reads (`ahead`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reach {
    field: u64,
    jump: u64,
    ahead: i64,
    /// Past an adaptive pool: every output reads the whole sequence.
    whole: bool,
}

impl Reach {
    const INPUT: Reach = Reach {
        field: 1,
        jump: 1,
        ahead: 0,
        whole: false,
    };

    /// Through a window of `k` taps `d` apart, stride `s`, `left` padding.
    fn window(self, k: u64, s: u64, d: u64, left: u64) -> Reach {
        let span = d * (k - 1);
        Reach {
            field: self.field + span * self.jump,
            jump: self.jump * s,
            ahead: self.ahead + (span as i64 - left as i64) * self.jump as i64,
            whole: self.whole,
        }
    }

    fn join(self, o: Reach) -> Reach {
        Reach {
            field: self.field.max(o.field),
            jump: self.jump.max(o.jump),
            ahead: self.ahead.max(o.ahead),
            whole: self.whole || o.whole,
        }
    }
}

/// One run of consecutive time ops in a chain.
struct Stack {
    layers: Vec<String>,
    /// Input steps one output step of the stack reads.
    field: u64,
    /// Input steps between neighbouring outputs so far.
    jump: u64,
    causal: bool,
}

/// What walking a graph for time found.
#[derive(Default)]
struct Walk {
    stacks: Vec<Stack>,
    /// The first adaptive pool: every output reads the whole sequence.
    whole: Option<String>,
    /// The first layer that makes an output read a later input, and how far.
    ahead: Option<(String, i64)>,
}

/// How the steps of `ir` move `input`; block uses are followed into their
/// instances through `instance`.
fn flow<'a>(
    ir: &'a NetIr,
    input: Reach,
    instance: &dyn Fn(&NetIr, &Ident) -> Option<&'a NetIr>,
    walk: &mut Walk,
    prefix: &str,
) -> Reach {
    let mut reach: Vec<Option<Reach>> = vec![None; ir.values.len()];
    reach[0] = Some(input);
    for seg in &ir.segments {
        match seg {
            Segment::Chain {
                src, dst, steps, ..
            } => {
                let mut r = reach[*src].unwrap_or(input);
                let mut run: Option<Stack> = None;
                for step in steps {
                    let name = format!(
                        "{prefix}{}",
                        step.label.split(':').next().unwrap_or_default()
                    );
                    let before = r;
                    let window = match &step.op {
                        StepOp::Conv1d {
                            kernel,
                            pad,
                            stride,
                            dilation,
                            ..
                        } => Some((*kernel, *stride, *dilation, pad.0)),
                        StepOp::Pool1d {
                            kernel,
                            stride,
                            padding,
                            dilation,
                            ..
                        } => Some((*kernel, *stride, *dilation, *padding)),
                        _ => None,
                    };
                    match (&step.op, window) {
                        (_, Some((k, s, d, left))) => {
                            r = r.window(k, s, d, left);
                            let st = run.get_or_insert(Stack {
                                layers: Vec::new(),
                                field: 1,
                                jump: 1,
                                causal: true,
                            });
                            st.layers.push(name.clone());
                            st.field += d * (k - 1) * st.jump;
                            st.jump *= s;
                            st.causal &= d * (k - 1) <= left;
                        }
                        // Pointwise in time: the stack goes on through them.
                        (StepOp::Act(_) | StepOp::Dropout { .. } | StepOp::BatchNorm { .. }, _) => {
                        }
                        // A bidirectional recurrent layer reads the whole
                        // sequence, as an adaptive pool does.
                        (StepOp::Rnn(rnn), _) if rnn.bidirectional => {
                            walk.stacks.extend(run.take());
                            r.whole = true;
                            walk.whole.get_or_insert(name.clone());
                        }
                        (StepOp::AdaptivePool1d { .. }, _) => {
                            walk.stacks.extend(run.take());
                            r.whole = true;
                            walk.whole.get_or_insert(name.clone());
                        }
                        (StepOp::Block { field, .. }, _) => {
                            walk.stacks.extend(run.take());
                            if let Some(inst) = instance(ir, field) {
                                r = flow(inst, r, instance, walk, &format!("{name}."));
                            }
                        }
                        _ => walk.stacks.extend(run.take()),
                    }
                    if r.ahead > before.ahead && !r.whole && walk.ahead.is_none() {
                        walk.ahead = Some((name, r.ahead));
                    }
                }
                walk.stacks.extend(run.take());
                reach[*dst] = Some(r);
            }
            Segment::Merge { inputs, dst, .. } => {
                reach[*dst] = inputs.iter().filter_map(|&v| reach[v]).reduce(Reach::join);
            }
            Segment::Select { src, dst, .. } | Segment::State { src, dst, .. } => {
                reach[*dst] = reach[*src]
            }
        }
    }
    reach[ir.output].unwrap_or(input)
}

/// The summary's notes on time, for a network with 1-D convolutions or
/// pools: each conv stack's receptive field, and whether an output sees the
/// future. Empty for one without.
pub fn time_notes<'a>(
    ir: &'a NetIr,
    instances: &dyn Fn(usize, usize) -> Option<&'a NetIr>,
) -> String {
    let lookup = |owner: &NetIr, field: &Ident| -> Option<&'a NetIr> {
        let f = owner.fields.iter().find(|f| &f.ident == field)?;
        match f.kind {
            FieldKind::Block { def, instance } => instances(def, instance),
            FieldKind::Layer(_) => None,
        }
    };
    let mut walk = Walk::default();
    let out = flow(ir, Reach::INPUT, &lookup, &mut walk, "");
    let Walk {
        stacks,
        whole,
        ahead,
    } = walk;
    if stacks.is_empty() {
        return String::new();
    }
    let mut s = String::from("Time (Conv1d and 1-D pools):\n");
    for st in &stacks {
        let names = match st.layers.as_slice() {
            [one] => format!("`{one}`"),
            [a, .., b] => format!("`{a}` .. `{b}` ({} layers)", st.layers.len()),
            [] => continue,
        };
        s += &format!(
            "  stack {names}: receptive field {} steps{}\n",
            st.field,
            if st.causal { ", causal" } else { "" }
        );
    }
    match &whole {
        Some(at) => {
            s += &format!(
                "  output: every step reads the whole sequence from `{at}` on (receptive field {} steps before it)\n",
                out.field
            );
        }
        None => s += &format!("  output: receptive field {} steps\n", out.field),
    }
    match (ahead, whole) {
        (None, None) => s += "  causal: no output sees the future\n",
        (None, Some(at)) => {
            s += &format!("  causal up to `{at}`: no step before it sees the future\n")
        }
        (Some((at, n)), _) => {
            s += &format!(
                "  not causal: from `{at}` on, an output sees {n} step{} ahead\n",
                if n == 1 { "" } else { "s" }
            )
        }
    }
    s
}
