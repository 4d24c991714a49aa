//! 1-D pooling along time over `[B, C, T]`: `MaxPool1d` and `AvgPool1d`
//! (PyTorch's padding, dilation, ceil mode and `count_include_pad`), and
//! the adaptive pools, which choose their windows to give a fixed length.

use proc_macro2::TokenStream;
use quote::quote;

use crate::emit::usize_lit;
use crate::infer::{FailKind, Failure};
use crate::infer::{Step, StepResult};
use crate::lower::StepOp;
use crate::ops::pool::{pool_text, read_adaptive, read_pool, Pool, PoolKind, COUNT_INCLUDE_PAD};
use crate::ops::window::spatial;
use crate::ops::{ArgKind, ArgSpec, EmitCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, Dim};

/// A 1-D pool: the 2-D pools' arguments with one number per axis, read by
/// the same reader.
pub type Pool1d = Pool<u64>;

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
    aliases: &[],
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
    resolve: |a, layer| read_pool(a, layer, PoolKind::Max).map(Op::Pool1d),
};

pub const AVG_POOL1D: OpDef = OpDef {
    name: "AvgPool1d",
    spellings: &["AvgPool1d", "avg_pool1d"],
    aliases: &[],
    positional: &["kernel", "stride"],
    args: &[KERNEL, STRIDE, PADDING, CEIL_MODE, COUNT_INCLUDE_PAD],
    resolve: |a, layer| read_pool(a, layer, PoolKind::Avg).map(Op::Pool1d),
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
    aliases: &[],
    positional: &["output_size"],
    args: OUTPUT_SIZE,
    resolve: |a, layer| {
        let out = read_adaptive(a, layer)?;
        Some(Op::AdaptivePool1d {
            kind: PoolKind::Avg,
            out,
        })
    },
};

pub const ADAPTIVE_MAX_POOL1D: OpDef = OpDef {
    name: "AdaptiveMaxPool1d",
    spellings: &["AdaptiveMaxPool1d", "adaptive_max_pool1d"],
    aliases: &[],
    positional: &["output_size"],
    args: OUTPUT_SIZE,
    resolve: |a, layer| {
        let out = read_adaptive(a, layer)?;
        Some(Op::AdaptivePool1d {
            kind: PoolKind::Max,
            out,
        })
    },
};

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
    let desc = pool_text(name(p.kind, false), p);
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
        Dim::Lin(l) if l.as_multiple().is_some() => (l.sym.clone(), l.as_multiple()),
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
