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
use crate::ops;
pub use crate::ops::conv::conv_padding;
use crate::resolve::{Env, Item, Op, ResolvedLayer};
use crate::shape::{fmt_shape, normalize_dim, Constraints, Dim, Shape};

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
    /// The chain's input holds integer token ids (only an `Embedding` takes it).
    pub ids: bool,
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
    /// The output still holds token ids (the chain has no layer).
    pub ids: bool,
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
    let mut ids = ctx.ids;
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
                        let checked = ops::embedding::check_ids(&cx, op, ids);
                        ids = false;
                        match checked.and_then(|()| step(&cx, op)) {
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
        ids,
        failures,
        constraints: cons.into_inner(),
    }
}

/// One layer's shape step: the layer, its input and what the rule may
/// report or constrain.
pub struct Step<'a> {
    pub index: usize,
    pub layer: &'a ResolvedLayer,
    pub input: &'a Shape,
    /// How messages name what came before (`` `conv1` ``, "the input").
    pub prev: &'a str,
    pub ov: Overrides,
    pub ctx: &'a InferCx<'a>,
    pub cons: &'a RefCell<Constraints>,
}

impl Step<'_> {
    pub fn fail(&self, kind: FailKind, span: SpanRange, message: String) -> Failure {
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
    pub fn why(&self) -> String {
        format!("`{}`", self.layer.positional())
    }

    /// A symbolic dim scaled by a whole factor (up-sampling); a fraction
    /// needs a known size.
    pub fn lin_scaled(&self, axis: usize, what: &str, factor: f64) -> Result<Dim, Failure> {
        match &self.input[axis] {
            Dim::Known(n) => Ok(Dim::Known((*n as f64 * factor).floor() as u64)),
            d if factor.fract() == 0.0 && factor >= 1.0 => Ok(d.scale(factor as u64)),
            _ => self.known(axis, what).map(Dim::Known),
        }
    }

    pub fn name(&self) -> &str {
        &self.layer.label
    }

    /// A lengths argument (`lengths = lens`, `key_lengths = lens`) names a
    /// `[batch]` tensor: the error at the name otherwise. `what`: "length",
    /// "key length".
    pub fn lengths_arg(
        &self,
        arg: Option<&(proc_macro2::Ident, Option<usize>)>,
        batch: &Dim,
        what: &str,
    ) -> Result<(), Failure> {
        let Some((name, Some(v))) = arg else {
            return Ok(());
        };
        let Some(got) = self.ctx.values.get(*v).cloned().flatten() else {
            return Ok(());
        };
        if got == [batch.clone()] {
            return Ok(());
        }
        let mut f = self.fail(
            FailKind::Other,
            SpanRange::single(name.span()),
            format!(
                "`{}` reads one {what} per sequence from `{name}`, which must be [{batch}], but is {}",
                self.name(),
                fmt_shape(&got)
            ),
        );
        f.help
            .push(format!("declare it as `{name}: [{batch}] u32`"));
        Err(f)
    }

    /// `name: [in] -> [out]`, the trace of a step that reshapes.
    pub fn reshape_trace(&self, out: &[Dim]) -> String {
        format!(
            "{}: {} -> {}",
            self.name(),
            fmt_shape(self.input),
            fmt_shape(out)
        )
    }

    pub fn need_rank(&self, op: &str, rank: usize, layout: &str) -> Result<(), Failure> {
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
    pub fn known(&self, axis: usize, what: &str) -> Result<u64, Failure> {
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

pub type StepResult = Result<(Shape, Option<String>), Failure>;

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
        Op::Conv2d(c) => ops::conv::infer_conv2d(cx, c),
        Op::ConvTranspose2d(c) => ops::conv::infer_conv_transpose2d(cx, c),
        Op::Upsample(u) => ops::resize::infer_upsample(cx, u),
        Op::PixelShuffle { r } => ops::resize::infer_pixel_shuffle(cx, r),
        Op::Filter(f) => ops::filter::infer_filter(cx, f),
        Op::Dropout { .. } => ops::dropout::infer_dropout(cx),
        Op::LayerNorm(l) => ops::layer_norm::infer_layer_norm(cx, l),
        Op::MultiHeadAttention(m) => ops::attention::infer_mha(cx, m),
        Op::Rnn(r) => ops::rnn::infer_rnn(cx, r),
        Op::Reverse(r) => ops::reshape::infer_reverse(cx, r),
        Op::PatchEmbed(pe) => ops::vit::infer_patch_embed(cx, pe),
        Op::ClassToken => ops::vit::infer_class_token(cx),
        Op::PosEmbedding => ops::vit::infer_pos_embedding(cx),
        Op::SinusoidalEncoding => ops::vit::infer_sinusoidal(cx),
        Op::DropPath { .. } => ops::vit::infer_drop_path(cx),
        Op::Select { dim, index } => ops::vit::infer_select(cx, dim, index),
        Op::BatchNorm(bn) => ops::norm::infer_batch_norm(cx, bn),
        Op::AdaptivePool2d { kind, out } => ops::pool::infer_adaptive_pool2d(cx, *kind, out),
        Op::Pool2d(p) => ops::pool::infer_pool2d(cx, p),
        Op::Flatten { start, end } => ops::reshape::infer_flatten(cx, start, end),
        Op::Linear(l) => ops::linear::infer_linear(cx, l),
        Op::Act(_) => ops::activation::infer_activation(cx),
        Op::Softmax { dim, .. } => ops::activation::infer_softmax(cx, dim),
        Op::Conv1d(c) => ops::conv1d::infer_conv1d(cx, c),
        Op::Pool1d(p) => ops::pool1d::infer_pool1d(cx, p),
        Op::AdaptivePool1d { kind, out } => ops::pool1d::infer_adaptive_pool1d(cx, *kind, out),
        Op::Transpose { d0, d1 } => ops::reshape::infer_transpose(cx, d0, d1),
        Op::Embedding(e) => ops::embedding::infer_embedding(cx, e),
    }
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
