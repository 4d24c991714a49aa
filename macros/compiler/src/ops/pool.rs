//! Pooling: `MaxPool2d` and `AvgPool2d` over a sliding window (PyTorch's
//! padding, dilation, ceil mode and `count_include_pad`), and the adaptive
//! pools, which choose their windows to give a fixed output size.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Layer;
use crate::infer::{pair_text, Step, StepResult};
use crate::lower::StepOp;
use crate::ops::args::Args;
use crate::ops::window::spatial;
use crate::ops::{pair_tokens, ArgKind, ArgSpec, EmitCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::Dim;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Clone, Debug)]
pub struct Pool2d {
    pub kind: PoolKind,
    pub kernel: Spanned<(u64, u64)>,
    pub stride: Spanned<(u64, u64)>,
    /// Symmetric per axis: `(h, w)`.
    pub padding: Spanned<(u64, u64)>,
    /// Max pooling only.
    pub dilation: Spanned<(u64, u64)>,
    pub ceil_mode: bool,
    /// Avg pooling only: divide by the padded window (PyTorch's default).
    pub count_include_pad: bool,
}

const KERNEL: ArgSpec = ArgSpec::new(
    "kernel",
    ArgKind::Pair,
    None,
    "the window, `k` or `(kh, kw)`",
)
.aka(&["kernel_size"]);
const STRIDE: ArgSpec = ArgSpec::new(
    "stride",
    ArgKind::Pair,
    Some("the kernel"),
    "the step between windows",
);
const PADDING: ArgSpec = ArgSpec::new(
    "padding",
    ArgKind::Pair,
    Some("0"),
    "added on both sides of each axis; at most half the kernel",
);
const CEIL_MODE: ArgSpec = ArgSpec::new(
    "ceil_mode",
    ArgKind::Bool,
    Some("false"),
    "round the output size up: a last window may start in the padding's end",
);

pub const MAX_POOL2D: OpDef = OpDef {
    name: "MaxPool2d",
    spellings: &["MaxPool2d", "max_pool2d", "max_pool"],
    positional: &["kernel", "stride"],
    args: &[
        KERNEL,
        STRIDE,
        PADDING,
        ArgSpec::new(
            "dilation",
            ArgKind::Pair,
            Some("1"),
            "the spacing between window taps",
        ),
        CEIL_MODE,
    ],
    resolve: resolve_max_pool,
};

pub const AVG_POOL2D: OpDef = OpDef {
    name: "AvgPool2d",
    spellings: &["AvgPool2d", "avg_pool2d", "avg_pool"],
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
    resolve: resolve_avg_pool,
};

const OUTPUT_SIZE: &[ArgSpec] = &[ArgSpec::new(
    "output_size",
    ArgKind::Pair,
    None,
    "the output's `(h, w)`, or one number for both",
)];

pub const ADAPTIVE_AVG_POOL2D: OpDef = OpDef {
    name: "AdaptiveAvgPool2d",
    spellings: &[
        "AdaptiveAvgPool2d",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool",
    ],
    positional: &["output_size"],
    args: OUTPUT_SIZE,
    resolve: resolve_adaptive_avg,
};

pub const ADAPTIVE_MAX_POOL2D: OpDef = OpDef {
    name: "AdaptiveMaxPool2d",
    spellings: &[
        "AdaptiveMaxPool2d",
        "adaptive_max_pool2d",
        "adaptive_max_pool",
    ],
    positional: &["output_size"],
    args: OUTPUT_SIZE,
    resolve: resolve_adaptive_max,
};

fn resolve_max_pool(a: &Args, layer: &Layer) -> Option<Op> {
    resolve_pool(a, layer, PoolKind::Max)
}

fn resolve_avg_pool(a: &Args, layer: &Layer) -> Option<Op> {
    resolve_pool(a, layer, PoolKind::Avg)
}

fn resolve_pool(a: &Args, layer: &Layer, kind: PoolKind) -> Option<Op> {
    let (cx, op) = (a.cx, a.op);
    let (kernel, stride) = (a.pair("kernel", 1, None), a.pair("stride", 1, None));
    let padding = a.pair_or("padding", 0, (0, 0));
    let dilation = a.pair_or("dilation", 1, (1, 1));
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
    let (k, p) = (kernel.value, padding.value);
    if p.0 > k.0 / 2 || p.1 > k.1 / 2 {
        cx.error(
            padding.span,
            format!(
                "`{op}` padding must be at most half the kernel (as in PyTorch): padding {} \
                 with kernel {} allows at most {}",
                pair_text(p),
                pair_text(k),
                pair_text((k.0 / 2, k.1 / 2))
            ),
        );
        return None;
    }
    Some(Op::Pool2d(Pool2d {
        kind,
        kernel,
        stride,
        padding,
        dilation: dilation?,
        ceil_mode: ceil_mode?,
        count_include_pad: count_include_pad?,
    }))
}

fn resolve_adaptive_avg(a: &Args, layer: &Layer) -> Option<Op> {
    resolve_adaptive(a, layer, PoolKind::Avg)
}

fn resolve_adaptive_max(a: &Args, layer: &Layer) -> Option<Op> {
    resolve_adaptive(a, layer, PoolKind::Max)
}

fn resolve_adaptive(a: &Args, layer: &Layer, kind: PoolKind) -> Option<Op> {
    let op = a.op;
    let Some(out) = a.pair("output_size", 1, None)? else {
        a.missing(format!(
            "`{op}` needs its output size\nhelp: write `{}((6, 6))` or `{}(1)`",
            layer.op, layer.op
        ));
        return None;
    };
    Some(Op::AdaptivePool2d { kind, out })
}

/// `H_out = floor((H + 2*padding - dilation*(k-1) - 1) / stride) + 1`
/// (`ceil` with `ceil_mode`), the same for W.
pub fn infer_pool2d(cx: &Step, p: &Pool2d) -> StepResult {
    let name = if p.kind == PoolKind::Max {
        "MaxPool2d"
    } else {
        "AvgPool2d"
    };
    cx.need_rank(name, 4, "[B, C, H, W]")?;
    let (k, st, pad, d) = (
        p.kernel.value,
        p.stride.value,
        p.padding.value,
        p.dilation.value,
    );
    let axes = [
        ("H", 2, k.0, st.0, (pad.0, pad.0), d.0, p.ceil_mode),
        ("W", 3, k.1, st.1, (pad.1, pad.1), d.1, p.ceil_mode),
    ];
    let (spatial, trace) = spatial(cx, &axes, p.kernel.span)?;
    let mut out = cx.input[..2].to_vec();
    out.extend(spatial);
    Ok((out, trace))
}

/// `[B, C, H, W]` -> `[B, C, out_h, out_w]`, any H and W.
pub fn infer_adaptive_pool2d(cx: &Step, kind: PoolKind, out: &Spanned<(u64, u64)>) -> StepResult {
    let name = if kind == PoolKind::Max {
        "AdaptiveMaxPool2d"
    } else {
        "AdaptiveAvgPool2d"
    };
    cx.need_rank(name, 4, "[B, C, H, W]")?;
    let (oh, ow) = out.value;
    let mut shape = cx.input[..2].to_vec();
    shape.extend([Dim::Known(oh), Dim::Known(ow)]);
    let trace = format!(
        "{} (adaptive: windows from floor(i*in/out) to ceil((i+1)*in/out))",
        cx.reshape_trace(&shape)
    );
    Ok((shape, Some(trace)))
}

pub fn lower_pool2d(p: &Pool2d) -> Lowered {
    let kind = if p.kind == PoolKind::Max {
        "MaxPool2d"
    } else {
        "AvgPool2d"
    };
    let mut desc = format!("{kind}({}", pair_text(p.kernel.value));
    if p.stride.value != p.kernel.value {
        desc += &format!(", stride {}", pair_text(p.stride.value));
    }
    if p.padding.value != (0, 0) {
        desc += &format!(", padding {}", pair_text(p.padding.value));
    }
    if p.dilation.value != (1, 1) {
        desc += &format!(", dilation {}", pair_text(p.dilation.value));
    }
    if p.ceil_mode {
        desc += ", ceil_mode";
    }
    if p.kind == PoolKind::Avg && !p.count_include_pad && p.padding.value != (0, 0) {
        desc += ", count_include_pad false";
    }
    desc += ")";
    let step = StepOp::Pool2d {
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

pub fn lower_adaptive_pool2d(kind: PoolKind, out: &Spanned<(u64, u64)>) -> Lowered {
    let name = if kind == PoolKind::Max {
        "AdaptiveMaxPool2d"
    } else {
        "AdaptiveAvgPool2d"
    };
    let desc = format!("{name}({})", pair_text(out.value));
    (
        desc,
        StepOp::AdaptivePool2d {
            kind,
            out: out.value,
        },
        None,
        Macs::zero(),
    )
}

/// The runtime's pooling takes candle's kernel when that is exact and no
/// gradient is needed, and differentiable composed ops otherwise (candle's
/// max-pool backward is wrong).
#[allow(clippy::too_many_arguments)]
pub fn emit_pool2d(
    e: &EmitCx,
    kind: PoolKind,
    kernel: (u64, u64),
    stride: (u64, u64),
    padding: (u64, u64),
    dilation: (u64, u64),
    ceil_mode: bool,
    count_include_pad: bool,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    let (k, st, pd, dl) = (
        pair_tokens(kernel),
        pair_tokens(stride),
        pair_tokens(padding),
        pair_tokens(dilation),
    );
    let f = match kind {
        PoolKind::Max => quote!(max_pool2d),
        PoolKind::Avg => quote!(avg_pool2d),
    };
    quote! {
        let #x = #p::#f(&#src, &#p::Pool2d {
            kernel: #k,
            stride: #st,
            padding: #pd,
            dilation: #dl,
            ceil_mode: #ceil_mode,
            count_include_pad: #count_include_pad,
        })?;
    }
}

pub fn emit_adaptive_pool2d(e: &EmitCx, kind: PoolKind, out: (u64, u64)) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    let o = pair_tokens(out);
    match kind {
        PoolKind::Max => quote!(let #x = #p::adaptive_max_pool2d(&#src, #o)?;),
        PoolKind::Avg => quote!(let #x = #p::adaptive_avg_pool2d(&#src, #o)?;),
    }
}
