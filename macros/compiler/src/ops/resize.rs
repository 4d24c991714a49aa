//! Resizing without weights: `Upsample` (nearest or bilinear, by a scale
//! factor or to a size) and `PixelShuffle` (channels to space).

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::{Layer, Value};
use crate::emit::usize_lit;
use crate::infer::FailKind;
use crate::infer::{Step, StepResult};
use crate::lower::StepOp;
use crate::ops::args::Args;
use crate::ops::{
    pair_tokens, sized, Alias, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef,
};
use crate::resolve::{Op, Spanned};
use crate::shape::Dim;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UpsampleSize {
    /// `scale_factor`: `out = floor(in * scale)` per axis.
    Scale(f64, f64),
    /// `size = (h, w)`.
    Size(u64, u64),
}

#[derive(Clone, Debug)]
pub struct Upsample {
    pub size: Spanned<UpsampleSize>,
    /// `nearest` (false) or `bilinear` (true).
    pub bilinear: bool,
    pub align_corners: bool,
}

/// The output size `forward` passes to the runtime.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum UpsampleOut {
    Size(u64, u64),
    /// Whole scale factors over a size only the input decides.
    Scale(u64, u64),
}

pub const UPSAMPLE: OpDef = OpDef {
    name: "Upsample",
    spellings: &["Upsample", "upsample"],
    aliases: &[Alias::new("UpSampling2D", "Keras", "Upsample({args})")],
    positional: &[],
    args: &[
        ArgSpec::new(
            "scale_factor",
            ArgKind::Scale,
            None,
            "the output is `floor(in * scale)` per axis; whole numbers only",
        ),
        ArgSpec::new(
            "size",
            ArgKind::Pair,
            None,
            "the output's `(h, w)`, instead of `scale_factor`",
        ),
        ArgSpec::new(
            "mode",
            ArgKind::Choice(&["nearest", "bilinear"]),
            Some("nearest"),
            "how output pixels are computed from the input's",
        ),
        ArgSpec::new(
            "align_corners",
            ArgKind::Bool,
            Some("false"),
            "bilinear only: corner pixels of input and output are aligned",
        ),
    ],
    resolve: resolve_upsample,
};

pub const PIXEL_SHUFFLE: OpDef = OpDef {
    name: "PixelShuffle",
    spellings: &["PixelShuffle", "pixel_shuffle"],
    aliases: &[Alias::new(
        "DepthToSpace",
        "TensorFlow",
        "PixelShuffle({args})",
    )],
    positional: &["upscale_factor"],
    args: &[ArgSpec::new(
        "upscale_factor",
        ArgKind::Count,
        None,
        "`r`: `[B, C*r², H, W]` becomes `[B, C, H*r, W*r]`",
    )],
    resolve: resolve_pixel_shuffle,
};

fn resolve_upsample(a: &Args, _layer: &Layer) -> Option<Op> {
    let (cx, whole) = (a.cx, a.whole);
    let mode = match a.get("mode") {
        None => Some(false),
        Some(Value::Ident(i)) if i == "nearest" => Some(false),
        Some(Value::Ident(i)) if i == "bilinear" => Some(true),
        Some(other) => {
            cx.error(
                other.span(),
                format!(
                    "`mode` of `Upsample` is `nearest` or `bilinear`, found `{other}`\nhelp: write {}",
                    a.edit(
                        "mode",
                        other,
                        crate::diag::did_you_mean(&other.to_string(), ["nearest", "bilinear"])
                            .unwrap_or("nearest")
                    )
                ),
            );
            None
        }
    };
    let align_corners = a
        .get("align_corners")
        .map(|_| a.boolean("align_corners", false));
    let size = match (a.get("scale_factor"), a.get("size")) {
        (Some(_), Some(v)) => {
            cx.error(
                v.span(),
                "give `Upsample` either `scale_factor` or `size`, not both\nhelp: remove `size`",
            );
            None
        }
        (None, Some(v)) => a.pair("size", 1, None).flatten().map(|s| Spanned {
            value: UpsampleSize::Size(s.value.0, s.value.1),
            span: v.span(),
            written: true,
        }),
        (Some(v), None) => {
            let scale = |x: &Value| match x {
                Value::Int(n, _) if *n > 0 => Some(*n as f64),
                Value::Float(f, _) if *f > 0.0 => Some(*f),
                _ => None,
            };
            let value = match v {
                Value::Tuple(items, _) if items.len() == 2 => {
                    scale(&items[0]).zip(scale(&items[1]))
                }
                other => scale(other).map(|s| (s, s)),
            };
            match value {
                Some((h, w)) if h.fract() != 0.0 || w.fract() != 0.0 => {
                    cx.error(
                        v.span(),
                        "a fractional `scale_factor` maps coordinates differently in PyTorch \
                         (by 1/scale, not by input/output size)\n\
                         help: give the output size instead: `size = (h, w)`",
                    );
                    None
                }
                Some((h, w)) => Some(Spanned {
                    value: UpsampleSize::Scale(h, w),
                    span: v.span(),
                    written: true,
                }),
                None => {
                    cx.error(
                        v.span(),
                        "`scale_factor` of `Upsample` is a positive number or an `(h, w)` pair of them",
                    );
                    None
                }
            }
        }
        (None, None) => {
            a.missing("`Upsample` needs `scale_factor = 2` or `size = (h, w)`");
            None
        }
    };
    let bilinear = mode?;
    let align_corners = match align_corners {
        None => false,
        Some(b) => {
            let b = b?;
            if !bilinear {
                cx.error(
                    a.get("align_corners").map_or(whole, Value::span),
                    "`align_corners` only applies to `mode = bilinear`",
                );
                return None;
            }
            b
        }
    };
    Some(Op::Upsample(Upsample {
        size: size?,
        bilinear,
        align_corners,
    }))
}

fn resolve_pixel_shuffle(a: &Args, _layer: &Layer) -> Option<Op> {
    let Some(r) = a.uint("upscale_factor", 1, None)? else {
        a.missing("`PixelShuffle` needs its factor, e.g. `PixelShuffle(2)`");
        return None;
    };
    Some(Op::PixelShuffle { r })
}

/// `H_out = floor(H * scale_h)` (or the size given), the same for W.
pub fn infer_upsample(cx: &Step, u: &Upsample) -> StepResult {
    cx.need_rank("Upsample", 4, "[B, C, H, W]")?;
    let mut out = cx.input[..2].to_vec();
    let mut lines = Vec::new();
    for (axis, name) in [(2usize, "H"), (3, "W")] {
        let n = match u.size.value {
            UpsampleSize::Size(h, w) => Dim::Known(if axis == 2 { h } else { w }),
            UpsampleSize::Scale(sh, sw) => {
                let s = if axis == 2 { sh } else { sw };
                let n = cx.lin_scaled(axis, name, s)?;
                lines.push(format!("{name} = floor({} * {s}) = {n}", cx.input[axis]));
                n
            }
        };
        if n == Dim::Known(0) {
            return Err(cx.fail(
                FailKind::Other,
                u.size.span,
                format!(
                    "`{}` gives no output along {name}: {}",
                    cx.name(),
                    lines.join("; ")
                ),
            ));
        }
        out.push(n);
    }
    let trace = cx.reshape_trace(&out);
    Ok((out, Some(trace)))
}

/// `[B, C*r², H, W]` -> `[B, C, H*r, W*r]`.
pub fn infer_pixel_shuffle(cx: &Step, r: &Spanned<u64>) -> StepResult {
    cx.need_rank("PixelShuffle", 4, "[B, C, H, W]")?;
    let c = cx.known(1, "number of channels")?;
    let rr = r.value * r.value;
    if c % rr != 0 {
        let fits = (c / rr).max(1) * rr;
        let mut f = cx.fail(
            FailKind::Other,
            r.span,
            format!(
                "`{}` needs channels divisible by r² = {rr}, but {} gives {c} ({c} % {rr} = {})\n\
                 help: give the layer before it {fits} channels",
                cx.name(),
                cx.prev,
                c % rr,
            ),
        );
        let mut want = cx.input.clone();
        want[1] = Dim::Known(fits);
        f.wants_input = Some(Box::new(want));
        return Err(f);
    }
    let out = vec![
        cx.input[0].clone(),
        Dim::Known(c / rr),
        cx.input[2].scale(r.value),
        cx.input[3].scale(r.value),
    ];
    let trace = cx.reshape_trace(&out);
    Ok((out, Some(trace)))
}

pub fn lower_upsample(cx: &LowerCx, u: &Upsample) -> Lowered {
    let output = cx.output;
    let out = match (output[2].known(), output[3].known(), u.size.value) {
        (Some(h), Some(w), _) => UpsampleOut::Size(h, w),
        (_, _, UpsampleSize::Scale(sh, sw)) => UpsampleOut::Scale(sh as u64, sw as u64),
        (_, _, UpsampleSize::Size(h, w)) => UpsampleOut::Size(h, w),
    };
    let mode = if u.bilinear {
        if u.align_corners {
            "bilinear, align_corners"
        } else {
            "bilinear"
        }
    } else {
        "nearest"
    };
    let desc = format!(
        "Upsample({} x {}, {mode})",
        sized(&output[2]),
        sized(&output[3])
    );
    let step = StepOp::Upsample {
        out,
        bilinear: u.bilinear,
        align_corners: u.align_corners,
    };
    (desc, step, None, Macs::zero())
}

pub fn lower_pixel_shuffle(r: &Spanned<u64>) -> Lowered {
    (
        format!("PixelShuffle({})", r.value),
        StepOp::PixelShuffle { r: r.value },
        None,
        Macs::zero(),
    )
}

pub fn emit_upsample(
    e: &EmitCx,
    out: UpsampleOut,
    bilinear: bool,
    align_corners: bool,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    let o = match out {
        UpsampleOut::Size(h, w) => pair_tokens((h, w)),
        UpsampleOut::Scale(sh, sw) => {
            let s = pair_tokens((sh, sw));
            quote!(#p::scaled_size(&#src, #s)?)
        }
    };
    if bilinear {
        quote!(let #x = #p::upsample_bilinear2d(&#src, #o, #align_corners)?;)
    } else {
        quote!(let #x = #p::upsample_nearest2d(&#src, #o)?;)
    }
}

pub fn emit_pixel_shuffle(e: &EmitCx, r: u64) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    let r = usize_lit(r);
    quote!(let #x = #p::pixel_shuffle(&#src, #r)?;)
}
