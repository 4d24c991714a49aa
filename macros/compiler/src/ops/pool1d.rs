//! 1-D pooling along time over `[B, C, T]`: `MaxPool1d` and `AvgPool1d`
//! (PyTorch's padding, dilation, ceil mode and `count_include_pad`), and
//! the adaptive pools, which choose their windows to give a fixed length.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Layer;
use crate::check::{FailKind, Failure};
use crate::emit::usize_lit;
use crate::infer::{Step, StepResult};
use crate::lower::StepOp;
use crate::ops::args::Args;
use crate::ops::pool::PoolKind;
use crate::ops::window::spatial;
use crate::ops::{ArgKind, ArgSpec, EmitCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, Dim};

#[derive(Clone, Debug)]
pub struct Pool1d {
    pub kind: PoolKind,
    pub kernel: Spanned<u64>,
    pub stride: Spanned<u64>,
    /// On both ends.
    pub padding: Spanned<u64>,
    /// Max pooling only.
    pub dilation: Spanned<u64>,
    pub ceil_mode: bool,
    /// Avg pooling only: divide by the padded window (PyTorch's default).
    pub count_include_pad: bool,
}

const KERNEL: ArgSpec =
    ArgSpec::new("kernel", ArgKind::Count, None, "the window length").aka(&["kernel_size"]);
const STRIDE: ArgSpec = ArgSpec::new(
    "stride",
    ArgKind::Count,
    Some("the kernel"),
    "the step between windows",
);
const PADDING: ArgSpec = ArgSpec::new(
    "padding",
    ArgKind::Count,
    Some("0"),
    "added on both ends; at most half the kernel",
);
const CEIL_MODE: ArgSpec = ArgSpec::new(
    "ceil_mode",
    ArgKind::Bool,
    Some("false"),
    "round the output length up: a last window may start in the padding's end",
);

pub const MAX_POOL1D: OpDef = OpDef {
    name: "MaxPool1d",
    spellings: &["MaxPool1d", "max_pool1d"],
    positional: &["kernel", "stride"],
    args: &[
        KERNEL,
        STRIDE,
        PADDING,
        ArgSpec::new(
            "dilation",
            ArgKind::Count,
            Some("1"),
            "the spacing between window taps",
        ),
        CEIL_MODE,
    ],
    resolve: resolve_max_pool1d,
};

pub const AVG_POOL1D: OpDef = OpDef {
    name: "AvgPool1d",
    spellings: &["AvgPool1d", "avg_pool1d"],
    positional: &["kernel", "stride"],
    args: &[
        KERNEL,
        STRIDE,
        PADDING,
        CEIL_MODE,
        ArgSpec::new(
            "count_include_pad",
            ArgKind::Bool,
            Some("true"),
            "divide by the whole window, padding included",
        ),
    ],
    resolve: resolve_avg_pool1d,
};

const OUTPUT_SIZE: &[ArgSpec] = &[ArgSpec::new(
    "output_size",
    ArgKind::Count,
    None,
    "the output's length",
)];

pub const ADAPTIVE_AVG_POOL1D: OpDef = OpDef {
    name: "AdaptiveAvgPool1d",
    spellings: &["AdaptiveAvgPool1d", "adaptive_avg_pool1d"],
    positional: &["output_size"],
    args: OUTPUT_SIZE,
    resolve: resolve_adaptive_avg1d,
};

pub const ADAPTIVE_MAX_POOL1D: OpDef = OpDef {
    name: "AdaptiveMaxPool1d",
    spellings: &["AdaptiveMaxPool1d", "adaptive_max_pool1d"],
    positional: &["output_size"],
    args: OUTPUT_SIZE,
    resolve: resolve_adaptive_max1d,
};

fn resolve_max_pool1d(a: &Args, layer: &Layer) -> Option<Op> {
    resolve_pool1d(a, layer, PoolKind::Max)
}

fn resolve_avg_pool1d(a: &Args, layer: &Layer) -> Option<Op> {
    resolve_pool1d(a, layer, PoolKind::Avg)
}

fn resolve_pool1d(a: &Args, layer: &Layer, kind: PoolKind) -> Option<Op> {
    let (cx, op) = (a.cx, a.op);
    let (kernel, stride) = (a.uint("kernel", 1, None), a.uint("stride", 1, None));
    let padding = a.uint_or("padding", 0, 0);
    let dilation = a.uint_or("dilation", 1, 1);
    let ceil_mode = a.boolean("ceil_mode", false);
    let count_include_pad = a.boolean("count_include_pad", true);
    let Some(kernel) = kernel? else {
        a.missing(format!(
            "`{op}` needs a kernel size\nhelp: write `{}(2)`",
            layer.op
        ));
        return None;
    };
    let stride = match stride? {
        Some(s) => s,
        None => Spanned {
            written: false,
            ..kernel
        },
    };
    let padding = padding?;
    if padding.value > kernel.value / 2 {
        cx.error(
            padding.span,
            format!(
                "`{op}` padding must be at most half the kernel (as in PyTorch): padding {} \
                 with kernel {} allows at most {}",
                padding.value,
                kernel.value,
                kernel.value / 2
            ),
        );
        return None;
    }
    Some(Op::Pool1d(Pool1d {
        kind,
        kernel,
        stride,
        padding,
        dilation: dilation?,
        ceil_mode: ceil_mode?,
        count_include_pad: count_include_pad?,
    }))
}

fn resolve_adaptive_avg1d(a: &Args, layer: &Layer) -> Option<Op> {
    resolve_adaptive1d(a, layer, PoolKind::Avg)
}

fn resolve_adaptive_max1d(a: &Args, layer: &Layer) -> Option<Op> {
    resolve_adaptive1d(a, layer, PoolKind::Max)
}

fn resolve_adaptive1d(a: &Args, layer: &Layer, kind: PoolKind) -> Option<Op> {
    let op = a.op;
    let Some(out) = a.uint("output_size", 1, None)? else {
        a.missing(format!(
            "`{op}` needs its output length\nhelp: write `{}(1)`",
            layer.op
        ));
        return None;
    };
    Some(Op::AdaptivePool1d { kind, out })
}

fn name(kind: PoolKind, adaptive: bool) -> &'static str {
    match (kind, adaptive) {
        (PoolKind::Max, false) => "MaxPool1d",
        (PoolKind::Avg, false) => "AvgPool1d",
        (PoolKind::Max, true) => "AdaptiveMaxPool1d",
        (PoolKind::Avg, true) => "AdaptiveAvgPool1d",
    }
}

/// `T_out = floor((T + 2*padding - dilation*(k-1) - 1) / stride) + 1`
/// (`ceil` with `ceil_mode`).
pub fn infer_pool1d(cx: &Step, p: &Pool1d) -> StepResult {
    cx.need_rank(name(p.kind, false), 3, "[B, C, T]")?;
    let pad = p.padding.value;
    let axes = [(
        "T",
        2,
        p.kernel.value,
        p.stride.value,
        (pad, pad),
        p.dilation.value,
        p.ceil_mode,
    )];
    let (time, trace) = spatial(cx, &axes, p.kernel.span)?;
    let mut out = cx.input[..2].to_vec();
    out.extend(time);
    Ok((out, trace))
}

/// `[B, C, T]` -> `[B, C, out]`, any T.
pub fn infer_adaptive_pool1d(cx: &Step, kind: PoolKind, out: &Spanned<u64>) -> StepResult {
    cx.need_rank(name(kind, true), 3, "[B, C, T]")?;
    let mut shape = cx.input[..2].to_vec();
    shape.push(Dim::Known(out.value));
    let trace = format!(
        "{} (adaptive: windows from floor(i*T/out) to ceil((i+1)*T/out))",
        cx.reshape_trace(&shape)
    );
    Ok((shape, Some(trace)))
}

pub fn lower_pool1d(p: &Pool1d) -> Lowered {
    let mut desc = format!("{}({}", name(p.kind, false), p.kernel.value);
    if p.stride.value != p.kernel.value {
        desc += &format!(", stride {}", p.stride.value);
    }
    if p.padding.value != 0 {
        desc += &format!(", padding {}", p.padding.value);
    }
    if p.dilation.value != 1 {
        desc += &format!(", dilation {}", p.dilation.value);
    }
    if p.ceil_mode {
        desc += ", ceil_mode";
    }
    if p.kind == PoolKind::Avg && !p.count_include_pad && p.padding.value != 0 {
        desc += ", count_include_pad false";
    }
    desc += ")";
    let step = StepOp::Pool1d {
        kind: p.kind,
        kernel: p.kernel.value,
        stride: p.stride.value,
        padding: p.padding.value,
        dilation: p.dilation.value,
        ceil_mode: p.ceil_mode,
        count_include_pad: p.count_include_pad,
    };
    (desc, step, None, Macs::zero())
}

pub fn lower_adaptive_pool1d(kind: PoolKind, out: &Spanned<u64>) -> Lowered {
    (
        format!("{}({})", name(kind, true), out.value),
        StepOp::AdaptivePool1d {
            kind,
            out: out.value,
        },
        None,
        Macs::zero(),
    )
}

/// The runtime's 2-D pooling with a height of one.
#[allow(clippy::too_many_arguments)]
pub fn emit_pool1d(
    e: &EmitCx,
    kind: PoolKind,
    kernel: u64,
    stride: u64,
    padding: u64,
    dilation: u64,
    ceil_mode: bool,
    count_include_pad: bool,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    let (k, s, pd, d) = (
        usize_lit(kernel),
        usize_lit(stride),
        usize_lit(padding),
        usize_lit(dilation),
    );
    let f = match kind {
        PoolKind::Max => quote!(max_pool1d),
        PoolKind::Avg => quote!(avg_pool1d),
    };
    quote! {
        let #x = #p::#f(&#src, &#p::Pool1d {
            kernel: #k,
            stride: #s,
            padding: #pd,
            dilation: #d,
            ceil_mode: #ceil_mode,
            count_include_pad: #count_include_pad,
        })?;
    }
}

pub fn emit_adaptive_pool1d(e: &EmitCx, kind: PoolKind, out: u64) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    let o = usize_lit(out);
    match kind {
        PoolKind::Max => quote!(let #x = #p::adaptive_max_pool1d(&#src, #o)?;),
        PoolKind::Avg => quote!(let #x = #p::adaptive_avg_pool1d(&#src, #o)?;),
    }
}

/// A layer that needs a number of features (`Linear`) over a dim that
/// grows with a symbolic length: the error, with the pooling that makes
/// the size fixed. `None` when dim `axis` is a number.
pub fn length_as_features(cx: &Step, axis: usize) -> Option<Failure> {
    // The symbol and the known factor it is multiplied by: `T`, `8*T`.
    let (sym, factor) = match &cx.input[axis] {
        Dim::Known(_) => return None,
        Dim::Lin(l) if l.den == 1 && l.off == 0 => (l.sym.clone(), Some(l.num)),
        Dim::Lin(l) => (l.sym.clone(), None),
        Dim::Sym(s) => {
            let parts: Vec<&str> = s.split('*').map(str::trim).collect();
            let syms: Vec<&str> = parts
                .iter()
                .copied()
                .filter(|p| p.parse::<u64>().is_err())
                .collect();
            let factor = parts.iter().filter_map(|p| p.parse::<u64>().ok()).product();
            match syms.as_slice() {
                [one] if one.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                    (one.to_string(), Some(factor))
                }
                // Several symbols (`16*H*W`): the general message.
                _ => return None,
            }
        }
    };
    let mut f = cx.fail(
        FailKind::Other,
        cx.layer.span,
        format!(
            "`{}` needs a known number of input features, but dim {axis} of {} is `{}`, which grows \
             with the input's `{sym}`",
            cx.name(),
            fmt_shape(cx.input),
            cx.input[axis]
        ),
    );
    let name = cx.name();
    match (cx.input.as_slice(), factor) {
        // [B, C, T]: a Linear would read time as features.
        ([_, Dim::Known(c), _], Some(1)) => {
            f.help.push(format!(
                "pool `{sym}` away first: `AdaptiveAvgPool1d(1) -> flatten -> {name}` gives {c} features"
            ));
            f.help.push(format!(
                "apply it at every step: `Transpose(1, 2) -> {name}` reads the {c} channels of [B, {sym}, {c}]"
            ));
        }
        // A flattened [B, C, T]: C*T features.
        ([_, _], Some(c)) => f.help.push(format!(
            "fix the length before `flatten`: `AdaptiveAvgPool1d(1) -> flatten` gives {c} features, \
             `AdaptiveAvgPool1d(n) -> flatten` gives {c}*n"
        )),
        _ => f.help.push(format!(
            "give `{sym}` a number in the input shape, or pool it to a fixed size with `AdaptiveAvgPool1d`"
        )),
    }
    Some(f)
}
