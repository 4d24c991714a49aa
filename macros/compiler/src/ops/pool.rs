//! Pooling: `MaxPool2d` and `AvgPool2d` over a sliding window (PyTorch's
//! padding, dilation, ceil mode and `count_include_pad`), and the adaptive
//! pools, which choose their windows to give a fixed output size.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, ToTokens};

use crate::ast::Layer;
use crate::emit::usize_lit;
use crate::infer::{pair_text, Step, StepResult};
use crate::lower::StepOp;
use crate::ops::args::Args;
use crate::ops::window::spatial;
use crate::ops::{pair_tokens, Alias, ArgKind, ArgSpec, EmitCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::Dim;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// A sliding-window pool as written. `A` holds one value per pooled axis:
/// `(h, w)` for the 2-D pools, the time axis's for the 1-D ones
/// ([`Pool1d`](crate::ops::pool1d::Pool1d)), which share this file's
/// readers.
#[derive(Clone, Debug)]
pub struct Pool<A> {
    pub kind: PoolKind,
    pub kernel: Spanned<A>,
    pub stride: Spanned<A>,
    /// Symmetric: on both ends of each axis.
    pub padding: Spanned<A>,
    /// Max pooling only.
    pub dilation: Spanned<A>,
    pub ceil_mode: bool,
    /// Avg pooling only: divide by the padded window (PyTorch's default).
    pub count_include_pad: bool,
}

pub type Pool2d = Pool<(u64, u64)>;

/// One value per pooled axis: `(u64, u64)` (`(h, w)`, written `k` or
/// `(kh, kw)`) or `u64` (time).
pub trait Axes: Copy + PartialEq {
    /// The same number on every axis.
    fn all(n: u64) -> Self;
    /// Reads argument `key`, each number at least `min`.
    fn read(a: &Args, key: &str, min: u64, default: Option<Self>) -> Option<Option<Spanned<Self>>>;
    /// Half on each axis, rounded down.
    fn half(self) -> Self;
    /// At most `limit` on each axis.
    fn at_most(self, limit: Self) -> bool;
    /// As messages and the summary write it: `2`, `(2, 3)`.
    fn text(self) -> String;
    /// The help for an adaptive pool written without its output size.
    fn output_help(op: &str, written: &str) -> String;
    /// As the emitted call takes it: `(2usize, 2usize)`, `2usize`.
    fn tokens(self) -> TokenStream;
    /// The runtime's max and avg pools and their spec type.
    const RUNTIME: [&'static str; 3];
}

impl Axes for (u64, u64) {
    fn all(n: u64) -> Self {
        (n, n)
    }

    fn read(a: &Args, key: &str, min: u64, default: Option<Self>) -> Option<Option<Spanned<Self>>> {
        a.pair(key, min, default)
    }

    fn half(self) -> Self {
        (self.0 / 2, self.1 / 2)
    }

    fn at_most(self, limit: Self) -> bool {
        self.0 <= limit.0 && self.1 <= limit.1
    }

    fn text(self) -> String {
        pair_text(self)
    }

    fn output_help(op: &str, written: &str) -> String {
        format!("`{op}` needs its output size\nhelp: write `{written}((6, 6))` or `{written}(1)`")
    }

    fn tokens(self) -> TokenStream {
        pair_tokens(self)
    }

    const RUNTIME: [&'static str; 3] = ["max_pool2d", "avg_pool2d", "Pool2d"];
}

impl Axes for u64 {
    fn all(n: u64) -> Self {
        n
    }

    fn read(a: &Args, key: &str, min: u64, default: Option<Self>) -> Option<Option<Spanned<Self>>> {
        a.uint(key, min, default)
    }

    fn half(self) -> Self {
        self / 2
    }

    fn at_most(self, limit: Self) -> bool {
        self <= limit
    }

    fn text(self) -> String {
        self.to_string()
    }

    fn output_help(op: &str, written: &str) -> String {
        format!("`{op}` needs its output length\nhelp: write `{written}(1)`")
    }

    fn tokens(self) -> TokenStream {
        usize_lit(self).into_token_stream()
    }

    /// The runtime's 2-D pooling with a height of one.
    const RUNTIME: [&'static str; 3] = ["max_pool1d", "avg_pool1d", "Pool1d"];
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

/// Avg pooling's, in both families.
pub const COUNT_INCLUDE_PAD: ArgSpec = ArgSpec::new(
    "count_include_pad",
    ArgKind::Bool,
    Some("true"),
    "divide by the whole window, padding included",
);

pub const MAX_POOL2D: OpDef = OpDef {
    name: "MaxPool2d",
    spellings: &["MaxPool2d", "max_pool2d", "max_pool"],
    aliases: &[
        Alias::new("MaxPooling2D", "Keras", "MaxPool2d({args})"),
        Alias::new("MaxPool", "Flax and TensorFlow", "MaxPool2d({args})"),
    ],
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
    resolve: |a, layer| read_pool(a, layer, PoolKind::Max).map(Op::Pool2d),
};

pub const AVG_POOL2D: OpDef = OpDef {
    name: "AvgPool2d",
    spellings: &["AvgPool2d", "avg_pool2d", "avg_pool"],
    aliases: &[
        Alias::new("AveragePooling2D", "Keras", "AvgPool2d({args})"),
        Alias::new("AvgPool", "Flax and TensorFlow", "AvgPool2d({args})"),
    ],
    positional: &["kernel", "stride"],
    args: &[KERNEL, STRIDE, PADDING, CEIL_MODE, COUNT_INCLUDE_PAD],
    resolve: |a, layer| read_pool(a, layer, PoolKind::Avg).map(Op::Pool2d),
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
    aliases: &[
        Alias::new(
            "GlobalAveragePooling2D",
            "Keras",
            "AdaptiveAvgPool2d(1) -> flatten",
        ),
        Alias::new("GlobalAvgPool", "ONNX", "AdaptiveAvgPool2d(1) -> flatten"),
    ],
    positional: &["output_size"],
    args: OUTPUT_SIZE,
    resolve: |a, layer| {
        let out = read_adaptive(a, layer)?;
        Some(Op::AdaptivePool2d {
            kind: PoolKind::Avg,
            out,
        })
    },
};

pub const ADAPTIVE_MAX_POOL2D: OpDef = OpDef {
    name: "AdaptiveMaxPool2d",
    spellings: &[
        "AdaptiveMaxPool2d",
        "adaptive_max_pool2d",
        "adaptive_max_pool",
    ],
    aliases: &[
        Alias::new(
            "GlobalMaxPooling2D",
            "Keras",
            "AdaptiveMaxPool2d(1) -> flatten",
        ),
        Alias::new("GlobalMaxPool", "ONNX", "AdaptiveMaxPool2d(1) -> flatten"),
    ],
    positional: &["output_size"],
    args: OUTPUT_SIZE,
    resolve: |a, layer| {
        let out = read_adaptive(a, layer)?;
        Some(Op::AdaptivePool2d {
            kind: PoolKind::Max,
            out,
        })
    },
};

/// Reads a sliding-window pool's arguments (both families').
pub fn read_pool<A: Axes>(a: &Args, layer: &Layer, kind: PoolKind) -> Option<Pool<A>> {
    let (cx, op) = (a.cx, a.op);
    let (kernel, stride) = (A::read(a, "kernel", 1, None), A::read(a, "stride", 1, None));
    let or = |key: &str, min: u64, default: A| {
        let v = A::read(a, key, min, Some(default))?;
        Some(v.unwrap_or(Spanned {
            value: default,
            span: a.whole,
            written: false,
        }))
    };
    let padding = or("padding", 0, A::all(0));
    let dilation = or("dilation", 1, A::all(1));
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
    if !p.at_most(k.half()) {
        cx.error(
            padding.span,
            format!(
                "`{op}` padding must be at most half the kernel (as in PyTorch): padding {} \
                 with kernel {} allows at most {}\nhelp: write {}",
                p.text(),
                k.text(),
                k.half().text(),
                a.get("padding")
                    .map_or(format!("`padding = {}`", k.half().text()), |v| a.edit(
                        "padding",
                        v,
                        k.half().text()
                    ))
            ),
        );
        return None;
    }
    Some(Pool {
        kind,
        kernel,
        stride,
        padding,
        dilation: dilation?,
        ceil_mode: ceil_mode?,
        count_include_pad: count_include_pad?,
    })
}

/// Reads an adaptive pool's output size (both families').
pub fn read_adaptive<A: Axes>(a: &Args, layer: &Layer) -> Option<Spanned<A>> {
    let Some(out) = A::read(a, "output_size", 1, None)? else {
        a.missing(A::output_help(a.op, &layer.op.to_string()));
        return None;
    };
    Some(out)
}

/// The summary text of a pool: `MaxPool2d(3, stride 2, padding 1)`.
pub fn pool_text<A: Axes>(name: &str, p: &Pool<A>) -> String {
    let mut desc = format!("{name}({}", p.kernel.value.text());
    if p.stride.value != p.kernel.value {
        desc += &format!(", stride {}", p.stride.value.text());
    }
    if p.padding.value != A::all(0) {
        desc += &format!(", padding {}", p.padding.value.text());
    }
    if p.dilation.value != A::all(1) {
        desc += &format!(", dilation {}", p.dilation.value.text());
    }
    if p.ceil_mode {
        desc += ", ceil_mode";
    }
    if p.kind == PoolKind::Avg && !p.count_include_pad && p.padding.value != A::all(0) {
        desc += ", count_include_pad false";
    }
    desc + ")"
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
/// The edit that makes an adaptive pool give the declared spatial size
/// (`want`: the declared H and W where they are numbers).
pub fn adaptive_output_edit(
    label: &str,
    kind: PoolKind,
    out: (u64, u64),
    want: (Option<u64>, Option<u64>),
) -> Option<String> {
    let name = if kind == PoolKind::Max {
        "AdaptiveMaxPool2d"
    } else {
        "AdaptiveAvgPool2d"
    };
    let (h, w) = (want.0.unwrap_or(out.0), want.1.unwrap_or(out.1));
    if (h, w) == out {
        return None;
    }
    let size = if h == w {
        h.to_string()
    } else {
        format!("({h}, {w})")
    };
    Some(format!("write `{label}: {name}({size})`"))
}

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
    let desc = pool_text(kind, p);
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

/// The runtime's pooling (both families) takes candle's kernel when that
/// is exact and no gradient is needed, and differentiable composed ops
/// otherwise (candle's max-pool backward is wrong).
#[allow(clippy::too_many_arguments)]
pub fn emit_pool<A: Axes>(
    e: &EmitCx,
    kind: PoolKind,
    kernel: A,
    stride: A,
    padding: A,
    dilation: A,
    ceil_mode: bool,
    count_include_pad: bool,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    let (k, st, pd, dl) = (
        kernel.tokens(),
        stride.tokens(),
        padding.tokens(),
        dilation.tokens(),
    );
    let [max, avg, spec] = A::RUNTIME.map(|n| Ident::new(n, Span::call_site()));
    let f = match kind {
        PoolKind::Max => max,
        PoolKind::Avg => avg,
    };
    quote! {
        let #x = #p::#f(&#src, &#p::#spec {
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
