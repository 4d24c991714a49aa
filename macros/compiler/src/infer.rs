//! Shape inference: walks a network's chain, giving every tensor a shape by
//! the op's shape rule (in [`shape`](crate::shape)), and records a failure at
//! the offending tokens wherever a rule does not hold. After a failure the
//! shape becomes unknown (or, after an assertion, the asserted one), so one
//! mistake is one error.

use std::cell::RefCell;

use proc_macro2::Ident;

use crate::ast::{DimLit, ShapeLit};
use crate::block::Blocks;
use crate::declared::{self, declared_output};
use crate::diag::Diagnostic;
use crate::diag::SpanRange;
use crate::ops;
pub use crate::ops::conv::conv_padding;
use crate::resolve::{Env, Item, Node as GraphNode, NodeKind, Op, Program, ResolvedLayer};
use crate::shape::{fmt_shape, has_unknown, is_unknown, unknown_dim, Constraints, Dim, Shape};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    /// Two shapes disagree: worth showing the chain of sizes and searching
    /// for the earlier layer that would make them agree.
    Mismatch,
    Other,
}

#[derive(Clone, Debug)]
pub struct Failure {
    /// The chain item at fault (the item count for the declared output).
    pub item: usize,
    pub span: SpanRange,
    pub message: String,
    pub kind: FailKind,
    /// Lines shown after the chain of sizes (this step's own arithmetic).
    pub tail: Vec<String>,
    pub help: Vec<String>,
    /// Already reported where it happened (inside a block's use).
    pub reported: bool,
    /// An input this layer would take: the help then offers first the
    /// edit of the earlier layer that decides the size at fault (the
    /// convolution before a `PixelShuffle`, say).
    pub wants_input: Option<Box<Shape>>,
}

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
    // How many unknown sizes recovery has made (each a fresh symbol).
    let mut unknowns = 0;
    for (i, item) in items.iter().enumerate() {
        let before = cur.clone();
        let mut trace = None;
        match item {
            Item::Assert(lit) => {
                if let Some(shape) = cur.as_ref().filter(|s| !has_unknown(s)) {
                    if let Some(f) = declared::assertion(
                        i,
                        shape,
                        lit,
                        &prev_label,
                        ctx.env,
                        ctx.owner,
                        &mut cons.borrow_mut(),
                    ) {
                        failures.push(f);
                    }
                }
                // Carry on with what the user says the shape is, where
                // inference knows no better; a size the two disagree on is
                // unknown after it (either may be the mistake).
                let asserted = declared::eval_shape(&crate::diag::Ctxt::new(), lit, ctx.env);
                if !lit.dims.iter().any(|d| matches!(d, DimLit::Wild(_))) {
                    cur = Some(match &cur {
                        Some(known) if known.len() == asserted.len() => known
                            .iter()
                            .zip(asserted)
                            .map(|(k, a)| {
                                if k.is_unknown() {
                                    a
                                } else if *k == a {
                                    k.clone()
                                } else {
                                    unknowns += 1;
                                    unknown_dim(unknowns)
                                }
                            })
                            .collect(),
                        _ => asserted,
                    });
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
                            Err(mut f) => {
                                if follows_from_unknown(&cx, op) {
                                    f.reported = true;
                                }
                                if let Some(want) = f.wants_input.take() {
                                    if let Some(edit) =
                                        deciding_edit(&items[..i], &nodes, shape, &want)
                                    {
                                        f.help.insert(0, edit);
                                    }
                                }
                                failures.push(f);
                                // Go on with what the layer decides itself.
                                recover(&cx, op, &mut unknowns)
                            }
                        }
                    }
                    // The layer did not resolve (a wrong argument, a
                    // misspelt op): go on with what its op keeps whatever
                    // its arguments, so a later mistake is still reported.
                    (Some(shape), None) => {
                        // Whatever it was meant to be, it is taken to give
                        // what the next layer takes (not ids).
                        ids = false;
                        layer
                            .meant
                            .and_then(|m| recover_unresolved(m, shape, &mut unknowns))
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
    // After a failure, a declared output of another rank is the same
    // mistake seen again (a missing `flatten`), not a second one.
    let follow_on =
        |s: &Shape| !failures.is_empty() && output.is_some_and(|decl| decl.dims.len() != s.len());
    if let (Some(decl), Some(shape)) = (
        output,
        cur.as_ref().filter(|s| !has_unknown(s) && !follow_on(s)),
    ) {
        if let Some(mut f) = declared_output(
            items.len(),
            shape,
            decl,
            &prev_label,
            ctx.env,
            ctx.owner,
            &mut cons.borrow_mut(),
        ) {
            // The layer that decides the size comes first, then the
            // declaration (a fix in numbers only suits a network).
            if ctx.owner == "network" {
                let want = declared::eval_shape(&crate::diag::Ctxt::new(), decl, ctx.env);
                if let Some(edit) = deciding_edit(items, &nodes, shape, &want) {
                    f.help.insert(0, edit);
                }
            }
            failures.push(f);
        }
    }
    let mut cons = cons.into_inner();
    cons.rules.retain(|sym, _| !is_unknown(sym));
    Inferred {
        nodes,
        output: cur,
        ids,
        failures,
        constraints: cons,
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
            wants_input: None,
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
            let mut f = self.fail(
                FailKind::Other,
                self.layer.span,
                format!(
                    "`{}` ({op}) needs a {rank}-D input {layout}, but {} gives {}",
                    self.name(),
                    self.prev,
                    fmt_shape(self.input)
                ),
            );
            // A `flatten` just before a layer that wants the image.
            if self.prev == "`flatten`" && self.input.len() < rank {
                f.help
                    .push("the `flatten` comes too early: remove `flatten ->`".to_string());
            }
            return Err(f);
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
            // Over sizes unknown after an earlier error, the block's own
            // checks would only echo it: what it gives is still worked out,
            // silently.
            let report = cx.ctx.report && !has_unknown(cx.input);
            let mut inputs = vec![cx.input.clone()];
            for (_, v) in &u.tensors {
                match v.and_then(|v| cx.ctx.values.get(v).cloned().flatten()) {
                    Some(shape) if !has_unknown(&shape) => inputs.push(shape),
                    // Unknown after an earlier error, already reported.
                    _ => {
                        let mut f = cx.fail(FailKind::Other, u.span, String::new());
                        f.reported = true;
                        return Err(f);
                    }
                }
            }
            let Some(inst) = cx.ctx.blocks.instantiate(u, &inputs, report) else {
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
                for why in [&mut r.residues_why, &mut r.min_why] {
                    if !why.is_empty() {
                        *why = format!("{why} in `{at}`");
                    }
                }
            }
            if let Err(message) = cx.cons.borrow_mut().merge(&rules) {
                return Err(cx.fail(FailKind::Other, u.span, message));
            }
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

/// Whether a layer's failure could be caused by sizes unknown after an
/// earlier error (in its input or a tensor it reads). An unknown size could
/// be anything: if some size lets the layer fit, the failure is not
/// reported, as it would follow from the first. Tried: a large, highly
/// divisible size (every window fits, every common stride divides), then
/// each number the rule names when it fails at that size (a `Linear`'s
/// expected input features).
fn follows_from_unknown(cx: &Step, op: &Op) -> bool {
    let unknown_arg = op.tensor_args().iter().any(|(_, v)| {
        v.and_then(|v| cx.ctx.values.get(v).cloned().flatten())
            .is_some_and(|s| has_unknown(&s))
    });
    if unknown_arg {
        return true;
    }
    if !has_unknown(cx.input) {
        return false;
    }
    // 2^6 * 3^2 * 5 * 7.
    const LARGE: u64 = 20_160;
    let ctx = InferCx {
        report: false,
        ..*cx.ctx
    };
    let fits = |size: u64| -> Result<(), Failure> {
        let sized: Shape = cx
            .input
            .iter()
            .map(|d| {
                if d.is_unknown() {
                    Dim::Known(size)
                } else {
                    d.clone()
                }
            })
            .collect();
        let cons = RefCell::new(Constraints::default());
        let trial = Step {
            input: &sized,
            ctx: &ctx,
            cons: &cons,
            ..*cx
        };
        step(&trial, op).map(|_| ())
    };
    let Err(f) = fits(LARGE) else {
        return true;
    };
    let text = format!("{} {}", f.message, f.help.join(" "));
    let named: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .filter(|&n| n > 0 && n != LARGE)
        .collect();
    named.into_iter().take(8).any(|n| fits(n).is_ok())
}

/// The edit of the layer that decides the first dim where the chain's
/// output (`got`) and the declared shape (`want`) disagree: walking back
/// from the end over layers that keep that dim, the first one that sets
/// it (a `Linear`'s features, a convolution's channels, an adaptive
/// pool's size).
fn deciding_edit(items: &[Item], nodes: &[Node], got: &Shape, want: &Shape) -> Option<String> {
    if got.len() != want.len() {
        return None;
    }
    let (axis, value) = got
        .iter()
        .zip(want)
        .enumerate()
        .find_map(|(a, (g, w))| match w {
            Dim::Known(v) if g != w => Some((a, *v)),
            _ => None,
        })?;
    let rank = got.len();
    for (item, node) in items.iter().zip(nodes).rev() {
        let Item::Layer(layer) = item else { continue };
        let (Some(op), Some(input), Some(output)) =
            (&layer.op, node.input.as_ref(), node.output.as_ref())
        else {
            return None;
        };
        let label = layer.positional();
        let edit = match op {
            Op::Linear(l) => ops::linear::output_edit(&label, l, axis, rank, value),
            Op::Conv2d(c) => ops::conv::output_edit(&label, "Conv2d", c.in_ch, axis, value),
            Op::ConvTranspose2d(c) => {
                ops::conv::output_edit(&label, "ConvTranspose2d", c.in_ch, axis, value)
            }
            Op::Conv1d(c) => ops::conv::output_edit(&label, "Conv1d", c.in_ch, axis, value),
            Op::AdaptivePool2d { kind, out } if rank == 4 && axis >= 2 => {
                ops::pool::adaptive_output_edit(
                    &label,
                    *kind,
                    out.value,
                    (want[2].known(), want[3].known()),
                )
            }
            _ => None,
        };
        if edit.is_some() {
            return edit;
        }
        // A layer that changes this dim (or the rank) decides it in a way
        // no single number fixes.
        if input.len() != output.len() || input.get(axis) != output.get(axis) {
            return None;
        }
    }
    None
}

/// The shape after a layer that failed: what the layer decides on its own
/// (a convolution's output channels, a `Linear`'s features, an elementwise
/// op's whole shape), and fresh unknown sizes for the rest; `None` where
/// the op cannot say (its rank, or everything, depends on the input).
fn recover(cx: &Step, op: &Op, unknowns: &mut usize) -> Option<Shape> {
    let mut fresh = || {
        *unknowns += 1;
        unknown_dim(*unknowns)
    };
    let input = cx.input;
    let channels_first = |channels: u64, spatial: usize, fresh: &mut dyn FnMut() -> Dim| {
        (input.len() == spatial + 2).then(|| {
            let mut out = vec![input[0].clone(), Dim::Known(channels)];
            out.extend((0..spatial).map(|_| fresh()));
            out
        })
    };
    match op {
        Op::Conv2d(c) => channels_first(c.out_ch.value, 2, &mut fresh),
        Op::ConvTranspose2d(c) => channels_first(c.out_ch.value, 2, &mut fresh),
        Op::Conv1d(c) => channels_first(c.out_ch.value, 1, &mut fresh),
        Op::Pool2d(_) | Op::Upsample(_) | Op::Filter(_) => {
            (input.len() == 4).then(|| vec![input[0].clone(), input[1].clone(), fresh(), fresh()])
        }
        Op::Pool1d(_) => {
            (input.len() == 3).then(|| vec![input[0].clone(), input[1].clone(), fresh()])
        }
        Op::Linear(l) if input.len() >= 2 => {
            let mut out = input.clone();
            *out.last_mut()? = Dim::Known(l.out_f.value);
            Some(out)
        }
        // A norm that disagrees with its input about the features: either
        // may be the mistake, so what follows sees them as unknown (no
        // follow-on error whichever it was).
        Op::BatchNorm(_) if input.len() >= 2 => {
            let mut out = input.clone();
            out[1] = fresh();
            Some(out)
        }
        Op::LayerNorm(n) => {
            let k = n.shape.as_ref().map_or(1, |s| s.value.len());
            let mut out = input.clone();
            let from = out.len().saturating_sub(k).max(1);
            for d in &mut out[from..] {
                *d = fresh();
            }
            Some(out)
        }
        // Shape-preserving: a mismatch there does not change the shape.
        Op::Act(_) | Op::Dropout { .. } | Op::DropPath { .. } | Op::Softmax { .. } => {
            Some(input.clone())
        }
        _ => None,
    }
}

/// The shape after a layer whose arguments were wrong, from its op alone:
/// the shape-keeping ops keep it, the window ops keep the batch and rank
/// (the rest unknown), `Linear` keeps all but the features. `None` where
/// the op's rank depends on its arguments.
fn recover_unresolved(op: &str, input: &Shape, unknowns: &mut usize) -> Option<Shape> {
    let mut fresh = || {
        *unknowns += 1;
        unknown_dim(*unknowns)
    };
    let rank = |r: usize, fresh: &mut dyn FnMut() -> Dim| {
        (input.len() == r).then(|| {
            std::iter::once(input[0].clone())
                .chain((1..r).map(|_| fresh()))
                .collect()
        })
    };
    match op {
        "ReLU" | "Sigmoid" | "Tanh" | "ReLU6" | "LeakyReLU" | "GELU" | "SiLU" | "Hardswish"
        | "Softmax" | "LogSoftmax" | "Dropout" | "DropPath" | "BatchNorm2d" | "BatchNorm1d"
        | "LayerNorm" | "RMSNorm" => Some(input.clone()),
        "Conv2d" | "ConvTranspose2d" | "MaxPool2d" | "AvgPool2d" | "AdaptiveAvgPool2d"
        | "AdaptiveMaxPool2d" | "Upsample" | "PixelShuffle" => rank(4, &mut fresh),
        "Conv1d" | "MaxPool1d" | "AvgPool1d" | "AdaptiveAvgPool1d" | "AdaptiveMaxPool1d" => {
            rank(3, &mut fresh)
        }
        "Linear" if input.len() >= 2 => {
            let mut out = input.clone();
            *out.last_mut()? = fresh();
            Some(out)
        }
        _ => None,
    }
}

pub fn pair_text((a, b): (u64, u64)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("({a}, {b})")
    }
}

/// What inference learned about a whole graph: every value's shape
/// (`None` where an error made it unknown) and each chain node's details.
pub struct ProgramShapes {
    pub values: Vec<Option<Shape>>,
    /// Per node: the chain's inference (`None` for merges and chains whose
    /// input is unknown).
    pub chains: Vec<Option<Inferred>>,
    /// What the input's symbols must satisfy (checked at `forward`'s entry).
    pub constraints: Constraints,
    /// Per chain node: whether its input holds token ids (for the fix
    /// search, which infers the chain again).
    pub chain_ids: Vec<bool>,
    /// The failures outside chains, by node (the input's declared output
    /// at `nodes.len()`), each rendered with its derivation.
    pub problems: Vec<(usize, Diagnostic)>,
}

/// Infers every value of a graph (a network's, or a block instance's),
/// recording every failure where it happened: a chain's in its
/// [`Inferred`], a graph op's or a declared shape's in
/// [`ProgramShapes::problems`]. Nothing is reported here:
/// [`check::report`](crate::check::report) does that, in node order.
#[allow(clippy::too_many_arguments)]
pub fn program(
    blocks: &Blocks,
    input_name: &Ident,
    inputs: Vec<Shape>,
    program: &Program,
    out_decl: Option<&ShapeLit>,
    env: &Env,
    report: bool,
    owner: &'static str,
    // Which inputs hold integer token ids, in order (the first, then a
    // network's further inputs); missing ones are floats.
    input_ids: &[bool],
) -> ProgramShapes {
    let mut values: Vec<Option<Shape>> = vec![inputs.first().cloned()];
    // Which values hold integer token ids: the input declared so, and a
    // chain of no layers from it.
    let mut ids: Vec<bool> = vec![input_ids.first().copied().unwrap_or(false)];
    let mut chains: Vec<Option<Inferred>> = Vec::with_capacity(program.nodes.len());
    let mut chain_ids = Vec::with_capacity(program.nodes.len());
    let mut problems: Vec<(usize, Diagnostic)> = Vec::new();
    let mut constraints = Constraints::default();
    // Each node's further outputs (a `chunk`'s pieces after the first).
    let mut further: Vec<Vec<Shape>> = Vec::with_capacity(program.nodes.len());
    let name_of = |v: usize| value_name(input_name, program, v);
    for (i, node) in program.nodes.iter().enumerate() {
        let is_output = program.output == Some(i + 1);
        let decl = if is_output { out_decl } else { None };
        let mut fail = |span, message: String| problems.push((i, Diagnostic::new(span, message)));
        chain_ids.push(match &node.kind {
            NodeKind::Chain { input, .. } => input.is_some_and(|v| ids.get(v) == Some(&true)),
            _ => false,
        });
        if let Some(f) = merge_of_ids(node, &ids, &name_of) {
            fail(f.0, f.1);
            values.push(None);
            chains.push(None);
            ids.push(false);
            further.push(Vec::new());
            continue;
        }
        let mut more = Vec::new();
        let (value, chain) = match &node.kind {
            NodeKind::Chain { input, items } => {
                match input.and_then(|v| values.get(v).cloned().flatten()) {
                    Some(shape) => {
                        let ctx = InferCx {
                            blocks,
                            env,
                            report,
                            owner,
                            values: &values,
                            ids: input.is_some_and(|v| ids.get(v) == Some(&true)),
                        };
                        let result = infer(&shape, items, decl, Overrides::default(), &ctx);
                        if let Err(message) = constraints.merge(&result.constraints) {
                            if let Some(span) = items.iter().find_map(|it| match it {
                                Item::Layer(l) => Some(l.span),
                                Item::Assert(_) => None,
                            }) {
                                fail(span, message);
                            }
                        }
                        (result.output.clone(), Some(result))
                    }
                    None => (None, None),
                }
            }
            NodeKind::Input { index } => (inputs.get(*index).cloned(), None),
            NodeKind::Output { src, index } => {
                let out = src.and_then(|v| {
                    let shape = values.get(v).cloned().flatten()?;
                    match &program.node_of(v)?.kind {
                        // A final state of the layer ending the chain.
                        NodeKind::Chain { items, .. } => items.iter().rev().find_map(|i| match i {
                            Item::Layer(l) => match &l.op {
                                Some(crate::resolve::Op::Rnn(r)) => {
                                    Some(r.state_shape(&shape, index.checked_sub(1)?))
                                }
                                _ => None,
                            },
                            Item::Assert(_) => None,
                        }),
                        _ => further.get(v - 1)?.get(index.checked_sub(1)?).cloned(),
                    }
                });
                let what = match program.node_of(src.unwrap_or(0)).map(|n| &n.kind) {
                    Some(NodeKind::Merge { .. }) => "the piece",
                    _ => "the final state",
                };
                if let (Some(decl), Some(shape)) = (decl, out.as_ref().filter(|s| !has_unknown(s)))
                {
                    if let Some(f) =
                        declared_output(0, shape, decl, what, env, owner, &mut constraints)
                    {
                        fail(f.span, f.message);
                    }
                }
                (out, None)
            }
            NodeKind::Select { value, .. } => {
                let out = value.and_then(|v| values.get(v).cloned().flatten());
                if let (Some(decl), Some(shape)) = (decl, out.as_ref().filter(|s| !has_unknown(s)))
                {
                    if let Some(f) =
                        declared_output(0, shape, decl, "the branch", env, owner, &mut constraints)
                    {
                        fail(f.span, f.message);
                    }
                }
                (out, None)
            }
            NodeKind::Merge { kind, inputs, span } => {
                let shapes: Option<Vec<(Shape, SpanRange, String)>> = inputs
                    .iter()
                    .map(|(v, s)| {
                        let v = (*v)?;
                        let shape = values.get(v).cloned().flatten()?;
                        Some((shape, *s, name_of(v)))
                    })
                    .collect();
                let shapes_for_help = shapes.clone().unwrap_or_default();
                let out = shapes.and_then(|shapes| {
                    let unknown = shapes.iter().any(|(s, _, _)| has_unknown(s));
                    match crate::ops::merge::infer(kind, &shapes, *span, &mut constraints) {
                        Ok(mut outs) if !outs.is_empty() => {
                            more = outs.split_off(1);
                            outs.pop()
                        }
                        Ok(_) => None,
                        // Over a size unknown after an earlier error: that
                        // error is the one to fix.
                        Err(_) if unknown => None,
                        Err((span, message)) => {
                            // How each input got its shape: the arithmetic of
                            // the chain that made it.
                            let mut message = message;
                            let mut derivations = Vec::new();
                            let mut notes: Vec<String> = Vec::new();
                            for (v, _) in inputs {
                                let Some(v) = *v else { continue };
                                let Some(Some(inferred)) =
                                    v.checked_sub(1).and_then(|i| chains.get(i))
                                else {
                                    continue;
                                };
                                let traces: Vec<&String> = inferred
                                    .nodes
                                    .iter()
                                    .filter_map(|n| n.trace.as_ref())
                                    .collect();
                                if traces.is_empty() {
                                    continue;
                                }
                                // Every step, in order: the note is the
                                // operand's whole history.
                                let mut note = format!("note: {} came from", name_of(v));
                                for t in &traces {
                                    note.push_str(&format!("\n  {t}"));
                                }
                                notes.push(note);
                            }
                            // A recurrent layer's final state is not a
                            // sequence: say what it holds.
                            for (v, _) in inputs {
                                let Some(GraphNode {
                                    kind: NodeKind::Output { src: Some(src), index },
                                    ..
                                }) = v.and_then(|v| program.node_of(v))
                                else {
                                    continue;
                                };
                                let Some(GraphNode {
                                    kind: NodeKind::Chain { items, .. },
                                    ..
                                }) = program.node_of(*src)
                                else {
                                    continue;
                                };
                                let layer = items
                                    .iter()
                                    .rev()
                                    .find_map(|i| match i {
                                        Item::Layer(l) => Some(format!("`{}`", l.positional())),
                                        Item::Assert(_) => None,
                                    })
                                    .unwrap_or_else(|| name_of(*src));
                                derivations.push(format!(
                                    "{} is {layer}'s final {} state, [layers * directions, B, size]: one vector per \
                                     layer and direction, not one per step; the last layer's is `{} -> Select(0, -1)`",
                                    name_of(v.unwrap_or(0)),
                                    if *index == 1 { "hidden" } else { "cell" },
                                    name_of(v.unwrap_or(0)).trim_matches('`'),
                                ));
                            }
                            if !derivations.is_empty() {
                                // Before the help line, if there is one.
                                let at = message.find("\nhelp:").unwrap_or(message.len());
                                let lines: String =
                                    derivations.iter().map(|l| format!("\n  {l}")).collect();
                                message.insert_str(at, &lines);
                            }
                            // The layer that makes the operands fit, first.
                            let uses_bn = program.nodes.iter().any(|n| match &n.kind {
                                NodeKind::Chain { items, .. } => items.iter().any(|i| {
                                    matches!(i, Item::Layer(l) if matches!(l.op, Some(Op::BatchNorm(_))))
                                }),
                                _ => false,
                            });
                            if let Some(r) = crate::ops::merge::remedy(kind, &shapes_for_help, uses_bn) {
                                let at = message.find("\nhelp:").unwrap_or(message.len());
                                message.insert_str(at, &format!("\nhelp: {r}"));
                            }
                            for n in notes {
                                message.push('\n');
                                message.push_str(&n);
                            }
                            fail(span, message);
                            None
                        }
                    }
                });
                if let (Some(decl), Some(shape)) = (decl, out.as_ref().filter(|s| !has_unknown(s)))
                {
                    let what = format!("the `{}`", kind.symbol());
                    if let Some(f) =
                        declared_output(0, shape, decl, &what, env, owner, &mut constraints)
                    {
                        let help = if f.help.is_empty() {
                            String::new()
                        } else {
                            format!("\nhelp: {}", f.help.join("\n      or "))
                        };
                        fail(f.span, format!("{}{help}", f.message));
                    }
                }
                (out, None)
            }
        };
        ids.push(match &node.kind {
            NodeKind::Chain { .. } => chain.as_ref().is_some_and(|c| c.ids),
            NodeKind::Input { index } => input_ids.get(*index).copied().unwrap_or(false),
            NodeKind::Select { value, .. } => value.is_some_and(|v| ids.get(v) == Some(&true)),
            _ => false,
        });
        values.push(value);
        chains.push(chain);
        further.push(more);
    }
    if let (Some(0), Some(decl)) = (program.output, out_decl) {
        if let Some(f) = declared_output(
            0,
            &values[0].clone().unwrap_or_default(),
            decl,
            "the input",
            env,
            owner,
            &mut constraints,
        ) {
            problems.push((program.nodes.len(), Diagnostic::new(f.span, f.message)));
        }
    }
    ProgramShapes {
        values,
        chains,
        constraints,
        chain_ids,
        problems,
    }
}

/// Rule: a merge (`+`, `cat`, `crop`, `chunk`) takes floats, never token ids.
///
/// ```text
/// pub Net(ids: [B, T] u32) { let e = ids -> emb: Embedding(10, 4); cat(ids, e, dim = 1) }
/// ```
fn merge_of_ids(
    node: &GraphNode,
    ids: &[bool],
    name_of: &dyn Fn(usize) -> String,
) -> Option<(SpanRange, String)> {
    let NodeKind::Merge { kind, inputs, .. } = &node.kind else {
        return None;
    };
    let (v, span) = inputs
        .iter()
        .find_map(|(v, s)| v.filter(|v| ids.get(*v) == Some(&true)).map(|v| (v, *s)))?;
    Some((
        span,
        format!(
            "the `{}` works on floats, but {} holds integer token ids\n\
             help: turn the ids into vectors first: `{} -> Embedding(vocab, dim)`",
            kind.symbol(),
            name_of(v),
            name_of(v).trim_matches('`')
        ),
    ))
}

/// How a value is called in messages: its `let` name, or what made it.
pub fn value_name(input: &Ident, program: &Program, value: usize) -> String {
    match program.node_of(value) {
        None => format!("`{input}`"),
        Some(GraphNode { name: Some(n), .. }) => format!("`{n}`"),
        Some(GraphNode {
            kind: NodeKind::Merge { kind, .. },
            ..
        }) => format!("the `{}`", kind.symbol()),
        Some(GraphNode {
            kind: NodeKind::Select { .. },
            ..
        }) => "the `if`".to_string(),
        Some(GraphNode {
            kind: NodeKind::Input { .. },
            ..
        }) => "a further input".to_string(),
        Some(GraphNode {
            kind: NodeKind::Output { src, index },
            ..
        }) => match src.and_then(|v| program.node_of(v)).map(|n| &n.kind) {
            Some(NodeKind::Merge { kind, .. }) => {
                format!("piece {} of the `{}`", index + 1, kind.symbol())
            }
            _ => format!(
                "the final {} state",
                if *index == 1 { "hidden" } else { "cell" }
            ),
        },
        Some(GraphNode {
            kind: NodeKind::Chain { items, .. },
            ..
        }) => items
            .iter()
            .rev()
            .find_map(|i| match i {
                Item::Layer(l) => Some(format!("`{}`", l.label)),
                Item::Assert(_) => None,
            })
            .unwrap_or_else(|| "a chain".to_string()),
    }
}
