//! Shape inference: walks a network's chain, giving every tensor a shape by
//! the op's shape rule (in [`shape`](crate::shape)), and records a failure at
//! the offending tokens wherever a rule does not hold. After a failure the
//! shape becomes unknown (or, after an assertion, the asserted one), so one
//! mistake is one error.

use std::cell::RefCell;

use crate::ast::{DimLit, ShapeLit};
use crate::block::Blocks;
use crate::check::{self, FailKind, Failure};
use crate::diag::SpanRange;
use crate::resolve::{
    BatchNorm, Conv2d, ConvTranspose2d, Env, Item, Linear, Op, Padding, Pool2d, PoolKind,
    ResolvedLayer, Spanned, UpsampleSize,
};
use crate::shape::{fmt_shape, gcd, normalize_dim, product, Constraints, Dim, Shape, Window};

/// What inference runs against: the blocks (for block uses), the names in
/// scope (for assertions), and whether errors inside block uses are
/// reported (not while trying fixes).
#[derive(Clone, Copy)]
pub struct InferCx<'a> {
    pub blocks: &'a Blocks<'a>,
    pub env: &'a Env,
    pub report: bool,
    /// "network" or "block", for messages.
    pub owner: &'static str,
    /// The shapes of the graph's values made so far (a block use's further
    /// tensor inputs are among them).
    pub values: &'a [Option<Shape>],
}

/// What inference learned about one chain item.
#[derive(Clone, Debug)]
pub struct Node {
    pub input: Option<Shape>,
    pub output: Option<Shape>,
    /// The arithmetic of this step, when it changed the shape
    /// (`conv1: H = W = floor((28 - 5) / 1) + 1 = 24`).
    pub trace: Option<String>,
}

/// A hypothetical change to one layer, tried when searching for a fix.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// `(item index, padding)`: that convolution with symmetric padding.
    pub padding: Option<(usize, u64)>,
}

pub struct Inferred {
    pub nodes: Vec<Node>,
    pub output: Option<Shape>,
    pub failures: Vec<Failure>,
    pub constraints: Constraints,
}

/// The shape a network's input literal declares: numbers and symbols.
pub fn shape_of(lit: &ShapeLit) -> Shape {
    lit.dims
        .iter()
        .map(|d| match d {
            DimLit::Lit(n, _) => Dim::Known(*n),
            DimLit::Sym(s) => Dim::sym(s.to_string()),
            _ => Dim::Sym("_".into()),
        })
        .collect()
}

pub fn infer(
    input: &Shape,
    items: &[Item],
    output: Option<&ShapeLit>,
    ov: Overrides,
    ctx: &InferCx,
) -> Inferred {
    let cons = RefCell::new(Constraints::default());
    let mut cur: Option<Shape> = Some(input.clone());
    let mut nodes = Vec::with_capacity(items.len());
    let mut failures = Vec::new();
    let mut prev_label = String::from("the input");
    for (i, item) in items.iter().enumerate() {
        let before = cur.clone();
        let mut trace = None;
        match item {
            Item::Assert(lit) => {
                if let Some(shape) = &cur {
                    if let Some(f) =
                        check::assertion(i, shape, lit, &prev_label, ctx.env, ctx.owner)
                    {
                        failures.push(f);
                    }
                }
                // Carry on with what the user says the shape is.
                let asserted = check::eval_shape(&crate::diag::Ctxt::new(), lit, ctx.env);
                if !lit.dims.iter().any(|d| matches!(d, DimLit::Wild(_))) {
                    cur = Some(asserted);
                }
            }
            Item::Layer(layer) => {
                cur = match (&cur, &layer.op) {
                    (Some(shape), Some(op)) => {
                        let cx = Step {
                            index: i,
                            layer,
                            input: shape,
                            prev: &prev_label,
                            ov,
                            ctx,
                            cons: &cons,
                        };
                        match step(&cx, op) {
                            Ok((out, t)) => {
                                trace = t;
                                Some(out)
                            }
                            Err(f) => {
                                failures.push(f);
                                None
                            }
                        }
                    }
                    _ => None,
                };
                prev_label = format!("`{}`", layer.label);
            }
        }
        nodes.push(Node {
            input: before,
            output: cur.clone(),
            trace,
        });
    }
    if let (Some(decl), Some(shape)) = (output, &cur) {
        if let Some(f) =
            check::declared_output(items.len(), shape, decl, &prev_label, ctx.env, ctx.owner)
        {
            failures.push(f);
        }
    }
    Inferred {
        nodes,
        output: cur,
        failures,
        constraints: cons.into_inner(),
    }
}

struct Step<'a> {
    index: usize,
    layer: &'a ResolvedLayer,
    input: &'a Shape,
    prev: &'a str,
    ov: Overrides,
    ctx: &'a InferCx<'a>,
    cons: &'a RefCell<Constraints>,
}

impl Step<'_> {
    fn fail(&self, kind: FailKind, span: SpanRange, message: String) -> Failure {
        Failure {
            item: self.index,
            span,
            message,
            kind,
            tail: Vec::new(),
            help: Vec::new(),
            reported: false,
        }
    }

    /// Why a constraint on the input exists: this layer.
    fn why(&self) -> String {
        format!("`{}`", self.layer.label)
    }

    /// A symbolic dim scaled by a whole factor (up-sampling); a fraction
    /// needs a known size.
    fn lin_scaled(&self, axis: usize, what: &str, factor: f64) -> Result<Dim, Failure> {
        match &self.input[axis] {
            Dim::Known(n) => Ok(Dim::Known((*n as f64 * factor).floor() as u64)),
            d if factor.fract() == 0.0 && factor >= 1.0 => Ok(d.scale(factor as u64)),
            _ => self.known(axis, what).map(Dim::Known),
        }
    }

    fn name(&self) -> &str {
        &self.layer.label
    }

    /// `name: [in] -> [out]`, the trace of a step that reshapes.
    fn reshape_trace(&self, out: &[Dim]) -> String {
        format!(
            "{}: {} -> {}",
            self.name(),
            fmt_shape(self.input),
            fmt_shape(out)
        )
    }

    fn need_rank(&self, op: &str, rank: usize, layout: &str) -> Result<(), Failure> {
        if self.input.len() != rank {
            return Err(self.fail(
                FailKind::Other,
                self.layer.span,
                format!(
                    "`{}` ({op}) needs a {rank}-D input {layout}, but {} gives {}",
                    self.name(),
                    self.prev,
                    fmt_shape(self.input)
                ),
            ));
        }
        Ok(())
    }

    /// A dim that must be a number: a symbol there is an error.
    fn known(&self, axis: usize, what: &str) -> Result<u64, Failure> {
        match &self.input[axis] {
            Dim::Known(n) => Ok(*n),
            s => Err(self.fail(
                FailKind::Other,
                self.layer.span,
                format!(
                    "`{}` needs a known {what}, but dim {axis} of {} is `{s}`, which only the input decides\n\
                     help: give the input a number there, e.g. `[B, 3, 32, 32]`",
                    self.name(),
                    fmt_shape(self.input)
                ),
            )),
        }
    }
}

type StepResult = Result<(Shape, Option<String>), Failure>;

fn step(cx: &Step, op: &Op) -> StepResult {
    match op {
        Op::Block(u) => {
            let mut inputs = vec![cx.input.clone()];
            for (_, v) in &u.tensors {
                match v.and_then(|v| cx.ctx.values.get(v).cloned().flatten()) {
                    Some(shape) => inputs.push(shape),
                    // Unknown after an earlier error, already reported.
                    None => {
                        let mut f = cx.fail(FailKind::Other, u.span, String::new());
                        f.reported = true;
                        return Err(f);
                    }
                }
            }
            let Some(inst) = cx.ctx.blocks.instantiate(u, &inputs, cx.ctx.report) else {
                let mut f = cx.fail(
                    FailKind::Other,
                    u.span,
                    format!(
                        "`{}` does not fit here (reported inside the block)",
                        u.label
                    ),
                );
                f.reported = true;
                return Err(f);
            };
            // A rule from inside the block names the use too.
            let mut rules = inst.shapes.constraints.clone();
            let at = u.label.split(": ").next().unwrap_or(&u.label);
            for r in rules.rules.values_mut() {
                for why in [&mut r.multiple_why, &mut r.min_why] {
                    if !why.is_empty() {
                        *why = format!("{why} in `{at}`");
                    }
                }
            }
            cx.cons.borrow_mut().merge(&rules);
            let trace = format!(
                "{}: {} -> {}",
                u.label,
                fmt_shape(cx.input),
                fmt_shape(&inst.output)
            );
            Ok((inst.output.clone(), Some(trace)))
        }
        Op::Conv2d(c) => conv2d(cx, c),
        Op::ConvTranspose2d(c) => conv_transpose2d(cx, c),
        Op::Upsample(u) => {
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
        Op::PixelShuffle { r } => {
            cx.need_rank("PixelShuffle", 4, "[B, C, H, W]")?;
            let c = cx.known(1, "number of channels")?;
            let rr = r.value * r.value;
            if c % rr != 0 {
                return Err(cx.fail(
                    FailKind::Other,
                    r.span,
                    format!(
                        "`{}` needs channels divisible by r² = {rr}, but {} gives {c} ({c} % {rr} = {})\n\
                         help: give the layer before it {} channels",
                        cx.name(),
                        cx.prev,
                        c % rr,
                        (c / rr).max(1) * rr
                    ),
                ));
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
        Op::Dropout { .. } => Ok((cx.input.clone(), None)),
        Op::BatchNorm(bn) => batch_norm(cx, bn),
        Op::AdaptivePool2d { kind, out } => {
            let name = if *kind == PoolKind::Max {
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
        Op::Pool2d(p) => pool2d(cx, p),
        Op::Flatten { start, end } => {
            let rank = cx.input.len();
            let valid = format!(
                "valid dims for a rank-{rank} tensor {} are {}..={}",
                fmt_shape(cx.input),
                -(rank as i64),
                rank as i64 - 1
            );
            let (s, e) = (
                normalize_dim(start.value, rank),
                normalize_dim(end.value, rank),
            );
            for (key, dim, ok) in [
                ("start_dim", start, s.is_some()),
                ("end_dim", end, e.is_some()),
            ] {
                if !ok {
                    return Err(cx.fail(
                        FailKind::Other,
                        dim.span,
                        format!(
                            "`{}`: {key} = {} is out of range: {valid}",
                            cx.name(),
                            dim.value
                        ),
                    ));
                }
            }
            let (Some(s), Some(e)) = (s, e) else {
                return Err(cx.fail(FailKind::Other, start.span, valid));
            };
            if s > e {
                return Err(cx.fail(
                    FailKind::Other,
                    start.span,
                    format!("`{}`: start_dim {s} comes after end_dim {e}", cx.name()),
                ));
            }
            let mut out: Shape = cx.input[..s].to_vec();
            out.push(product(&cx.input[s..=e]));
            out.extend_from_slice(&cx.input[e + 1..]);
            let trace = cx.reshape_trace(&out);
            Ok((out, Some(trace)))
        }
        Op::Linear(l) => linear(cx, l),
        Op::Act(_) => Ok((cx.input.clone(), None)),
        Op::Softmax { dim, .. } => {
            if normalize_dim(dim.value, cx.input.len()).is_none() {
                return Err(cx.fail(
                    FailKind::Other,
                    dim.span,
                    format!(
                        "`{}`: dim {} is out of range for a rank-{} tensor {} (valid: {}..={})",
                        cx.name(),
                        dim.value,
                        cx.input.len(),
                        fmt_shape(cx.input),
                        -(cx.input.len() as i64),
                        cx.input.len() as i64 - 1
                    ),
                ));
            }
            Ok((cx.input.clone(), None))
        }
    }
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
    if cin % g != 0 || out_ch % g != 0 {
        let divisors: Vec<String> = (1..=gcd(cin, out_ch))
            .filter(|d| cin % d == 0 && out_ch % d == 0)
            .map(|d| d.to_string())
            .collect();
        return Err(cx.fail(
            FailKind::Other,
            groups.span,
            format!(
                "`{}`: groups = {g} must divide both the input channels and the output channels, \
                 but {cin} % {g} = {} and {out_ch} % {g} = {}\nhelp: groups that divide both: {}",
                cx.name(),
                cin % g,
                out_ch % g,
                divisors.join(", ")
            ),
        ));
    }
    Ok(cin)
}

fn conv2d(cx: &Step, c: &Conv2d) -> StepResult {
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

fn batch_norm(cx: &Step, bn: &BatchNorm) -> StepResult {
    let op = if bn.dims == 2 {
        "BatchNorm2d"
    } else {
        "BatchNorm1d"
    };
    let ranks_ok = if bn.dims == 2 {
        cx.input.len() == 4
    } else {
        matches!(cx.input.len(), 2 | 3)
    };
    if !ranks_ok {
        let want = if bn.dims == 2 {
            "a 4-D input [B, C, H, W]"
        } else {
            "a 2-D [B, C] or 3-D [B, C, L] input"
        };
        let hint = match (bn.dims, cx.input.len()) {
            (2, 2 | 3) => "\nhelp: use `BatchNorm1d` on a [B, C] or [B, C, L] input",
            (1, 4) => "\nhelp: use `BatchNorm2d` on a [B, C, H, W] input",
            _ => "",
        };
        return Err(cx.fail(
            FailKind::Other,
            cx.layer.span,
            format!(
                "`{}` ({op}) needs {want}, but {} gives {}{hint}",
                cx.name(),
                cx.prev,
                fmt_shape(cx.input)
            ),
        ));
    }
    let c = cx.known(1, "number of channels")?;
    if let Some(written) = bn.num_features {
        if written.value != c {
            let mut f = cx.fail(
                FailKind::Mismatch,
                written.span,
                format!(
                    "`{}` normalises {} channels, but {} gives {c} ({})",
                    cx.name(),
                    written.value,
                    cx.prev,
                    fmt_shape(cx.input)
                ),
            );
            f.help
                .push(format!("write `{op}({c})`, or `{op}` to infer it"));
            return Err(f);
        }
    }
    Ok((cx.input.clone(), None))
}

/// `H_out = (H - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1`.
fn conv_transpose2d(cx: &Step, c: &ConvTranspose2d) -> StepResult {
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

fn pool2d(cx: &Step, p: &Pool2d) -> StepResult {
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

/// Name, dim, kernel, stride, (pad_lo, pad_hi), dilation, ceil_mode.
type Axis = (&'static str, usize, u64, u64, (u64, u64), u64, bool);

/// The spatial output of a window op over H and W, with its arithmetic.
fn spatial(
    cx: &Step,
    axes: &[Axis; 2],
    kernel_span: SpanRange,
) -> Result<(Vec<Dim>, Option<String>), Failure> {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for &(axis_name, axis, kernel, stride, (lo, hi), dilation, ceil) in axes {
        match &cx.input[axis] {
            Dim::Lin(l) if !ceil => {
                // floor((l + lo + hi - eff) / stride) + 1, exact once the
                // symbol is a multiple that leaves no fraction.
                let eff = dilation * (kernel - 1) + 1;
                let span = l.shift(lo as i64 + hi as i64 - eff as i64);
                let why = cx.why();
                let mut cons = cx.cons.borrow_mut();
                cons.need_multiple(&l.sym, span.multiple_for(stride), &why);
                cons.need_at_least(&span, 0, &why);
                let n = span.floor_div(stride).shift(1);
                lines.push((
                    axis_name,
                    if lo + hi == 0 && dilation == 1 {
                        format!("floor(({l} - {kernel}) / {stride}) + 1 = {n}")
                    } else {
                        format!(
                            "floor(({l} + {lo} + {hi} - {dilation}*({kernel}-1) - 1) / {stride}) + 1 = {n}"
                        )
                    },
                ));
                out.push(Dim::Lin(n));
            }
            s @ (Dim::Lin(_) | Dim::Sym(_)) => {
                // A window that keeps any size keeps the symbol.
                let keeps = stride == 1 && lo + hi == dilation * (kernel - 1);
                if !keeps {
                    let why = if ceil { " (with `ceil_mode`)" } else { "" };
                    return Err(cx.fail(
                        FailKind::Other,
                        cx.layer.span,
                        format!(
                            "`{}` needs a known {axis_name}{why} to compute its output size, but {axis_name} \
                             is `{s}` in {}, which only the input decides\nhelp: give the input a number there, \
                             or keep the size with stride 1 and `padding = same`",
                            cx.name(),
                            fmt_shape(cx.input)
                        ),
                    ));
                }
                out.push(s.clone());
            }
            Dim::Known(input) => {
                let w = Window {
                    input: *input,
                    kernel,
                    stride,
                    pad_lo: lo,
                    pad_hi: hi,
                    dilation,
                    ceil,
                };
                match w.out() {
                    Ok(n) => {
                        out.push(Dim::Known(n));
                        lines.push((axis_name, w.arithmetic()));
                    }
                    Err(e) => {
                        let is_pool = matches!(cx.layer.op, Some(Op::Pool2d(_)));
                        let spans = if dilation == 1 {
                            format!("its kernel spans {kernel}")
                        } else {
                            format!(
                                "its kernel spans {} (dilation*(kernel-1) + 1 = {dilation}*({kernel}-1) + 1)",
                                e.effective_kernel
                            )
                        };
                        let padded = if lo + hi == 0 {
                            format!("the input is only {input}")
                        } else {
                            format!(
                                "the padded input is only {} ({input} + {lo} + {hi})",
                                e.padded
                            )
                        };
                        let mut f = cx.fail(
                            FailKind::Mismatch,
                            kernel_span,
                            format!(
                                "`{}` gives no output along {axis_name}: {spans} but {padded}",
                                cx.name(),
                            ),
                        );
                        f.tail
                            .push(format!("{}: {axis_name} = {}", cx.name(), w.arithmetic()));
                        let smaller = (e.padded - 1) / dilation + 1;
                        f.help.push(if is_pool {
                            format!("use a kernel of at most {smaller}")
                        } else {
                            let need = (e.effective_kernel - input).div_ceil(2);
                            format!(
                                "pad the input by at least {need} on each side, or use a kernel of at most {smaller}"
                            )
                        });
                        return Err(f);
                    }
                }
            }
        }
    }
    let trace = match lines.as_slice() {
        [] => None,
        [(a, t)] => Some(format!("{}: {a} = {t}", cx.name())),
        [(_, h), (_, w)] if h == w => Some(format!("{}: H = W = {h}", cx.name())),
        [(a, h), (b, w)] => Some(format!("{}: {a} = {h}; {b} = {w}", cx.name())),
        _ => None,
    };
    Ok((out, trace))
}

fn linear(cx: &Step, l: &Linear) -> StepResult {
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
    let fin = cx.known(last, "number of input features")?;
    if let Some(written) = l.in_f {
        if written.value != fin {
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
            f.help.push(format!(
                "write `Linear({fin} -> {})`, or `Linear({})` to infer it",
                l.out_f.value, l.out_f.value
            ));
            return Err(f);
        }
    }
    let mut out = cx.input.clone();
    out[last] = Dim::Known(l.out_f.value);
    let trace = cx.reshape_trace(&out);
    Ok((out, Some(trace)))
}

pub fn pair_text((a, b): (u64, u64)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("({a}, {b})")
    }
}

/// The shape a merge gives, or the error at the input that does not fit.
///
/// - `a + b` (and `-`, `*`): PyTorch broadcasting: shapes aligned on the
///   right, each pair of dims equal or one of them 1.
/// - `cat(.., dim = d)`: same rank, every dim equal but `d`, which adds up.
/// - `crop(a, like = b)`: `a`'s batch and channels, `b`'s height and width,
///   which must fit inside `a`'s.
pub fn merge(
    kind: &crate::resolve::MergeKind,
    inputs: &[(Shape, SpanRange, String)],
    span: SpanRange,
    cons: &mut Constraints,
) -> Result<Shape, (SpanRange, String)> {
    use crate::resolve::MergeKind;
    let kind = kind.clone();
    let crop_hint = |big: &(Shape, SpanRange, String), small: &(Shape, SpanRange, String)| match (
        big.0.get(2..4),
        small.0.get(2..4),
    ) {
        (Some([Dim::Known(h), Dim::Known(w)]), Some([Dim::Known(sh), Dim::Known(sw)]))
            if h >= sh && w >= sw && (h, w) != (sh, sw) =>
        {
            let name = big.2.trim_matches('`');
            let like = small.2.trim_matches('`');
            format!(
                "\nhelp: crop {} from {h}x{w} to {sh}x{sw}: `crop({name}, like = {like})`",
                big.2
            )
        }
        _ => String::new(),
    };
    match kind {
        MergeKind::Binary(op) => {
            let (a, b) = (&inputs[0], &inputs[1]);
            let rank = a.0.len().max(b.0.len());
            let mut out = Vec::with_capacity(rank);
            for i in 0..rank {
                let da = (i + a.0.len()).checked_sub(rank).map(|j| &a.0[j]);
                let db = (i + b.0.len()).checked_sub(rank).map(|j| &b.0[j]);
                out.push(match (da, db) {
                    (Some(x), None) | (None, Some(x)) => x.clone(),
                    (Some(x), Some(y)) if x == y => x.clone(),
                    (Some(Dim::Known(1)), Some(y)) => y.clone(),
                    (Some(x), Some(Dim::Known(1))) => x.clone(),
                    (Some(x), Some(y)) => {
                        let (big, small) = if x.known() >= y.known() {
                            (a, b)
                        } else {
                            (b, a)
                        };
                        return Err((
                            span,
                            format!(
                                "`{}` needs shapes that broadcast, but dim {i} is {x} in {} and {y} in {} \
                                 (neither is 1)\n  {}: {}\n  {}: {}{}",
                                op.symbol(),
                                a.2,
                                b.2,
                                a.2,
                                fmt_shape(&a.0),
                                b.2,
                                fmt_shape(&b.0),
                                crop_hint(big, small)
                            ),
                        ));
                    }
                    (None, None) => Dim::Known(1),
                });
            }
            Ok(out)
        }
        MergeKind::Cat { dim, dim_span } => {
            let first = &inputs[0];
            let rank = first.0.len();
            let Some(d) = normalize_dim(dim, rank) else {
                return Err((
                    dim_span,
                    format!(
                        "`cat`: dim {dim} is out of range for rank-{rank} tensors ({})",
                        fmt_shape(&first.0)
                    ),
                ));
            };
            let mut out = first.0.clone();
            for other in &inputs[1..] {
                if other.0.len() != rank {
                    return Err((
                        other.1,
                        format!(
                            "`cat` joins tensors of one rank, but {} is {} and {} is {}",
                            first.2,
                            fmt_shape(&first.0),
                            other.2,
                            fmt_shape(&other.0)
                        ),
                    ));
                }
                for (i, (x, y)) in first.0.iter().zip(&other.0).enumerate() {
                    if i != d && x != y {
                        let (big, small) = if x.known() >= y.known() {
                            (first, other)
                        } else {
                            (other, first)
                        };
                        return Err((
                            other.1,
                            format!(
                                "`cat` along dim {d} needs every other dim equal, but dim {i} is {x} in {} and {y} in {}\n  {}: {}\n  {}: {}{}",
                                first.2,
                                other.2,
                                first.2,
                                fmt_shape(&first.0),
                                other.2,
                                fmt_shape(&other.0),
                                crop_hint(big, small)
                            ),
                        ));
                    }
                }
                out[d] = match (&out[d], &other.0[d]) {
                    (Dim::Known(x), Dim::Known(y)) => Dim::Known(x + y),
                    (Dim::Lin(x), Dim::Lin(y)) if x.sym == y.sym => Dim::Lin(x.add(y)),
                    (x, y) => Dim::Sym(format!("{x}+{y}")),
                };
            }
            Ok(out)
        }
        MergeKind::Crop => {
            let (src, like) = (&inputs[0], &inputs[1]);
            if src.0.len() != 4 || like.0.len() != 4 {
                return Err((
                    span,
                    format!(
                        "`crop` works on [B, C, H, W] tensors, but {} is {} and {} is {}",
                        src.2,
                        fmt_shape(&src.0),
                        like.2,
                        fmt_shape(&like.0)
                    ),
                ));
            }
            for (axis, name) in [(2, "H"), (3, "W")] {
                let larger = |s: &dyn std::fmt::Display, l: &dyn std::fmt::Display| {
                    Err((
                        like.1,
                        format!(
                            "`crop` cannot make {} larger: its {name} is {s}, {} asks for {l}",
                            src.2, like.2
                        ),
                    ))
                };
                match (&src.0[axis], &like.0[axis]) {
                    (Dim::Known(s), Dim::Known(l)) if l > s => return larger(s, l),
                    (Dim::Known(_), Dim::Known(_)) => {}
                    (s, l) if s == l => {}
                    (Dim::Lin(s), Dim::Lin(l)) if s.sym == l.sym => {
                        // s - l = (qs - ql)*S + (os - ol) must not be negative.
                        let (a, b) = (
                            (s.num as u128) * (l.den as u128),
                            (l.num as u128) * (s.den as u128),
                        );
                        if a == b {
                            if l.off > s.off {
                                return larger(s, l);
                            }
                        } else if a < b {
                            return larger(s, l);
                        } else {
                            let diff = crate::shape::Lin {
                                sym: s.sym.clone(),
                                num: (a - b).min(u64::MAX as u128) as u64,
                                den: s.den.saturating_mul(l.den),
                                off: s.off - l.off,
                            };
                            cons.need_at_least(&diff, 0, &format!("the `crop` to {}", like.2));
                        }
                    }
                    (Dim::Lin(s), Dim::Known(l)) => {
                        cons.need_at_least(s, *l as i64, &format!("the `crop` to {}", like.2));
                    }
                    (s, l) => {
                        return Err((
                            span,
                            format!(
                            "`crop` needs sizes it can compare: {name} is {s} in {} and {l} in {}",
                            src.2, like.2
                        ),
                        ))
                    }
                }
            }
            Ok(vec![
                src.0[0].clone(),
                src.0[1].clone(),
                like.0[2].clone(),
                like.0[3].clone(),
            ])
        }
        MergeKind::CropSize { size, offset } => {
            let src = &inputs[0];
            if src.0.len() != 4 {
                return Err((
                    span,
                    format!(
                        "`crop` works on [B, C, H, W] tensors, but {} is {}",
                        src.2,
                        fmt_shape(&src.0)
                    ),
                ));
            }
            let (h, w) = size.value;
            let (top, left) = offset.map_or((0, 0), |o| o.value);
            for (axis, name, want, start, key) in
                [(2, "H", h, top, "top"), (3, "W", w, left, "left")]
            {
                let need = want + start;
                match &src.0[axis] {
                    Dim::Known(n) if *n < want => {
                        return Err((
                            size.span,
                            format!(
                                "`crop` is larger than its source: {name} = {want}, but {} has {name} = {n}\n  {}: {}",
                                src.2,
                                src.2,
                                fmt_shape(&src.0)
                            ),
                        ))
                    }
                    Dim::Known(n) if *n < need => {
                        let o = offset.map_or(size.span, |o| o.span);
                        return Err((
                            o,
                            format!(
                                "the crop runs past the edge of {}: `{key} = {start}` with {name} = {want} ends at {need}, \
                                 but {name} is {n}\nhelp: `{key}` at most {}",
                                src.2,
                                n - want
                            ),
                        ))
                    }
                    Dim::Known(_) => {}
                    Dim::Lin(l) => cons.need_at_least(l, need as i64, "a `crop`"),
                    other => {
                        return Err((
                            span,
                            format!("`crop` needs a size it can compare: {name} is {other} in {}", src.2),
                        ))
                    }
                }
            }
            Ok(vec![
                src.0[0].clone(),
                src.0[1].clone(),
                Dim::Known(h),
                Dim::Known(w),
            ])
        }
        MergeKind::Piece {
            how,
            dim,
            dim_span,
            index,
            count,
        } => {
            let src = &inputs[0];
            let rank = src.0.len();
            let Some(d) = normalize_dim(dim, rank) else {
                return Err((
                    dim_span,
                    format!(
                        "dim {dim} is out of range for {} {}",
                        src.2,
                        fmt_shape(&src.0)
                    ),
                ));
            };
            let Dim::Known(total) = src.0[d] else {
                return Err((
                    span,
                    format!(
                        "splitting needs a known size, but dim {d} of {} is `{}`",
                        src.2, src.0[d]
                    ),
                ));
            };
            let how_span = match &how {
                crate::resolve::SplitSpec::Chunk(n) | crate::resolve::SplitSpec::Size(n) => n.span,
                crate::resolve::SplitSpec::Sizes(v) => match (v.first(), v.last()) {
                    (Some(a), Some(b)) => a.span.to(b.span),
                    _ => span,
                },
            };
            let ranges = piece_ranges(&how, total).map_err(|m| {
                (
                    how_span,
                    format!(
                        "{m}, but dim {d} of {} is {total} ({})\nhelp: write sizes that add up to {total}",
                        src.2,
                        fmt_shape(&src.0)
                    ),
                )
            })?;
            if ranges.len() != count {
                let parts: Vec<String> = ranges.iter().map(|r| r.1.to_string()).collect();
                let (call, why, help) = match &how {
                    crate::resolve::SplitSpec::Chunk(n) => (
                        format!("chunk(.., {})", n.value),
                        format!(
                            "; torch.chunk cuts pieces of ceil({total} / {}) = {}",
                            n.value,
                            total.div_ceil(n.value)
                        ),
                        format!(
                            "bind {} names, or give the sizes: `split(.., [..], dim = {dim})`",
                            ranges.len()
                        ),
                    ),
                    crate::resolve::SplitSpec::Size(n) => (
                        format!("split(.., {})", n.value),
                        String::new(),
                        if total % count as u64 == 0 {
                            format!(
                                "bind {} names, or split into {count}: `split(.., {}, dim = {dim})`",
                                ranges.len(),
                                total / count as u64
                            )
                        } else {
                            format!("bind {} names", ranges.len())
                        },
                    ),
                    crate::resolve::SplitSpec::Sizes(_) => (
                        "split".to_string(),
                        String::new(),
                        format!("bind {} names", ranges.len()),
                    ),
                };
                return Err((
                    how_span,
                    format!(
                        "`{call}` of dim {d} = {total} of {} gives {} tensors ({}{why}), but `let` binds {count}\nhelp: {help}",
                        src.2,
                        ranges.len(),
                        parts.join(" + ")
                    ),
                ));
            }
            let mut out = src.0.clone();
            out[d] = Dim::Known(ranges[index].1);
            Ok(out)
        }
    }
}

/// `(start, length)` of each piece of a dim of size `total`, as
/// `torch.chunk` and `torch.split` cut it.
pub fn piece_ranges(
    how: &crate::resolve::SplitSpec,
    total: u64,
) -> Result<Vec<(u64, u64)>, String> {
    use crate::resolve::SplitSpec;
    let by_size = |size: u64| -> Vec<(u64, u64)> {
        (0..total.div_ceil(size))
            .map(|i| (i * size, size.min(total - i * size)))
            .collect()
    };
    match how {
        SplitSpec::Chunk(n) => {
            if n.value > total {
                return Err(format!(
                    "`chunk` into {} pieces is more than the size",
                    n.value
                ));
            }
            // torch.chunk: pieces of ceil(total / n), the last smaller.
            Ok(by_size(total.div_ceil(n.value)))
        }
        SplitSpec::Size(s) => Ok(by_size(s.value)),
        SplitSpec::Sizes(sizes) => {
            let sum: u64 = sizes.iter().map(|s| s.value).sum();
            if sum != total {
                return Err(format!(
                    "`split` sizes add up to {sum} ({})",
                    sizes
                        .iter()
                        .map(|s| s.value.to_string())
                        .collect::<Vec<_>>()
                        .join(" + ")
                ));
            }
            let mut start = 0;
            Ok(sizes
                .iter()
                .map(|s| {
                    let r = (start, s.value);
                    start += s.value;
                    r
                })
                .collect())
        }
    }
}
