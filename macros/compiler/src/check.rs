//! Check: reports what inference found, in node order, each failure once
//! at its own tokens with the arithmetic that led there; searches for a fix
//! where a shape disagrees (inferring the chain again with one change); and
//! checks a network's further outputs against their declared shapes.

use crate::ast::ShapeLit;
use crate::block::Blocks;
use crate::declared::declared_output;
use crate::diag::Ctxt;
use crate::infer::{
    conv_padding, infer, FailKind, Failure, InferCx, Inferred, Overrides, ProgramShapes,
};
use crate::resolve::{Env, Item, NodeKind, Op, Program};
use crate::shape::{fmt_shape, Dim, Shape};

/// Reports every failure inference recorded for a graph (a network's, or
/// a block instance's), in node order: a chain's with the chain of sizes
/// before it and a fix where one is found, the rest as recorded.
pub fn report(
    cx: &Ctxt,
    blocks: &Blocks,
    program: &Program,
    shapes: &ProgramShapes,
    out_decl: Option<&ShapeLit>,
    env: &Env,
    owner: &'static str,
) {
    let mut problems = shapes.problems.iter().peekable();
    for (i, node) in program.nodes.iter().enumerate() {
        if let (NodeKind::Chain { input, items }, Some(Some(inferred))) =
            (&node.kind, shapes.chains.get(i))
        {
            let shape = input.and_then(|v| shapes.values.get(v).cloned().flatten());
            if let Some(shape) = shape {
                let decl = if program.output == Some(i + 1) {
                    out_decl
                } else {
                    None
                };
                let ctx = InferCx {
                    blocks,
                    env,
                    report: true,
                    owner,
                    values: &shapes.values,
                    ids: shapes.chain_ids.get(i) == Some(&true),
                };
                report_chain(cx, &shape, items, decl, inferred, &ctx);
            }
        }
        while let Some((_, d)) = problems.next_if(|(at, _)| *at <= i) {
            cx.emit(d.clone());
        }
    }
    for (_, d) in problems {
        cx.emit(d.clone());
    }
}

/// A network's further outputs against their declared shapes
/// (`-> ([B, T, V], [2, B, H])`): as many as declared, each agreeing.
pub fn check_extra_outputs(
    cx: &Ctxt,
    program: &Program,
    shapes: &ProgramShapes,
    decls: &[ShapeLit],
    env: &Env,
) {
    if decls.is_empty() {
        return;
    }
    let given = program.extra_outputs.len();
    if decls.len() != given {
        let span = decls[0].span;
        cx.error(
            span,
            format!(
                "the network declares {} outputs, but its body gives {}\nhelp: {}",
                decls.len() + 1,
                given + 1,
                if given == 0 {
                    "end the body with a tuple of them, `(y, h)`, or declare one shape".to_string()
                } else {
                    format!("declare {} shapes, `-> ([..], ..)`", given + 1)
                }
            ),
        );
        return;
    }
    for (k, (v, decl)) in program.extra_outputs.iter().zip(decls).enumerate() {
        let Some(shape) = v
            .and_then(|v| shapes.values.get(v).cloned().flatten())
            .filter(|s| !crate::shape::has_unknown(s))
        else {
            continue;
        };
        let what = format!("output {}", k + 2);
        if let Some(f) = declared_output(
            0,
            &shape,
            decl,
            &what,
            env,
            "network",
            &mut Default::default(),
        ) {
            let help = if f.help.is_empty() {
                format!("declare it as `{}`", fmt_shape(&shape))
            } else {
                f.help.join("\n      or ")
            };
            cx.error(f.span, format!("{}\nhelp: {help}", f.message));
        }
    }
}

/// One chain's failures, inferred from `input`: a mismatch with the sizes
/// before it and the fixes found.
fn report_chain(
    cx: &Ctxt,
    input: &Shape,
    items: &[Item],
    decl: Option<&ShapeLit>,
    result: &Inferred,
    ctx: &InferCx,
) {
    for f in &result.failures {
        let mut message = f.message.clone();
        let mut help = Vec::new();
        if f.kind == FailKind::Mismatch {
            for line in trace_before(result, f.item) {
                message.push_str("\n  ");
                message.push_str(&line);
            }
            help.extend(fixes(input, items, decl, f, ctx));
        }
        for line in &f.tail {
            message.push_str("\n  ");
            message.push_str(line);
        }
        help.extend(f.help.iter().cloned());
        for (i, h) in help.iter().enumerate() {
            message.push_str(if i == 0 { "\nhelp: " } else { "\n      or " });
            message.push_str(h);
        }
        if !f.reported {
            cx.error(f.span, message);
        }
    }
}

/// The arithmetic of every step before `item` that changed the shape, and
/// the spatial sizes in a line (`H: 28 -> 24 -> 12 -> 8 -> 4`).
fn trace_before(result: &Inferred, item: usize) -> Vec<String> {
    let nodes = &result.nodes[..item.min(result.nodes.len())];
    // After an earlier failure, only what is known since (the sizes that
    // failure left unknown say nothing).
    let known = |s: &String| !s.contains('?');
    let mut lines: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.trace.clone())
        .filter(known)
        .collect();
    let mut sizes: Vec<String> = Vec::new();
    let first = nodes.first().and_then(|n| n.input.as_ref());
    for shape in first
        .into_iter()
        .chain(nodes.iter().filter_map(|n| n.output.as_ref()))
    {
        if shape.len() == 4 {
            let s = shape[2].to_string();
            if sizes.last() != Some(&s) {
                sizes.push(s);
            }
        }
    }
    if sizes.len() > 2 && sizes.iter().all(known) {
        lines.push(format!("H: {}", sizes.join(" -> ")));
    }
    lines
}

/// Searches earlier convolutions for a padding that makes failure `f` go
/// away without breaking anything before it. Written paddings come first
/// (the likely cause), then the smallest change.
fn fixes(
    input: &Shape,
    items: &[Item],
    decl: Option<&ShapeLit>,
    f: &Failure,
    ctx: &InferCx,
) -> Vec<String> {
    let ctx = InferCx {
        report: false,
        ..*ctx
    };
    let mut found = Vec::new();
    for (j, item) in items.iter().enumerate().take(f.item) {
        let Item::Layer(layer) = item else { continue };
        let Some(Op::Conv2d(c)) = &layer.op else {
            continue;
        };
        let (ph, pw) = conv_padding(c, j, Overrides::default());
        let current = (ph == pw && ph.0 == ph.1).then_some(ph.0);
        let max = c.kernel.value.0.max(c.kernel.value.1) * c.dilation.value.0;
        for p in 0..=max {
            if Some(p) == current {
                continue;
            }
            let ov = Overrides {
                padding: Some((j, p)),
            };
            let trial = infer(input, items, decl, ov, &ctx);
            if trial.failures.iter().any(|g| g.item <= f.item) {
                continue;
            }
            let here = match trial.nodes.get(f.item) {
                Some(n) => n.input.as_ref(),
                None => trial.output.as_ref(),
            };
            let here = here.map(|s| fmt_shape(s)).unwrap_or_default();
            let distance = current.map_or(p, |c| c.abs_diff(p));
            found.push((
                !c.padding.written,
                distance,
                j,
                p,
                layer.label.clone(),
                here,
            ));
        }
    }
    found.sort();
    // One suggestion per layer: the likeliest cause first, then another layer.
    let mut layers_seen = Vec::new();
    found.retain(|f| {
        let new = !layers_seen.contains(&f.2);
        layers_seen.push(f.2);
        new
    });
    found
        .into_iter()
        .take(2)
        .map(|(_, _, _, p, label, here)| {
            format!("`{label}` with `padding = {p}` gives {here} here")
        })
        .collect()
}

/// What a dry run of a strict network needs: the network and its inputs.
pub struct StrictRun<'a> {
    pub blocks: &'a Blocks<'a>,
    pub input_name: &'a proc_macro2::Ident,
    pub inputs: &'a [Shape],
    pub program: &'a Program,
    pub out_decl: Option<&'a ShapeLit>,
    pub input_ids: &'a [bool],
}

impl StrictRun<'_> {
    /// Infers the network with `input` as its first input, reporting
    /// nothing: whether anything failed.
    fn fails(&self, input: Shape, strict: bool) -> bool {
        self.blocks.strict.set(strict);
        let mut inputs = self.inputs.to_vec();
        inputs[0] = input;
        let shapes = crate::infer::program(
            self.blocks,
            self.input_name,
            inputs,
            self.program,
            self.out_decl,
            &self.program.env,
            false,
            "network",
            self.input_ids,
        );
        !shapes.problems.is_empty()
            || shapes
                .chains
                .iter()
                .flatten()
                .any(|c| !c.failures.is_empty())
    }

    /// For a strict network whose only failures are rows its window ops
    /// leave out: the nearest sizes of the input's known spatial dims
    /// (varied together when they are equal, as in a square image) at
    /// which nothing is left out, as a help line. `None` when the network
    /// fits as it is, fails for another reason, or no size near fits.
    pub fn lossless_sizes(&self) -> Option<String> {
        let input = self.inputs.first()?;
        let result = (|| {
            if !self.fails(input.clone(), true) || self.fails(input.clone(), false) {
                return None;
            }
            // The spatial dims: after [B, C] (or after [B] for a rank-2 input).
            let first = if input.len() >= 3 { 2 } else { 1 };
            let known: Vec<(usize, u64)> = input
                .iter()
                .enumerate()
                .skip(first)
                .filter_map(|(a, d)| d.known().map(|n| (a, n)))
                .collect();
            let &(_, size) = known.first()?;
            if known.iter().any(|&(_, n)| n != size) {
                return None;
            }
            let at = |n: u64| {
                let mut s = input.clone();
                for &(a, _) in &known {
                    s[a] = Dim::Known(n);
                }
                s
            };
            const REACH: u64 = 256;
            let below = (1..=REACH.min(size - 1))
                .map(|d| size - d)
                .find(|&n| !self.fails(at(n), true));
            let above = (1..=REACH)
                .map(|d| size + d)
                .find(|&n| !self.fails(at(n), true));
            let sizes: Vec<String> = below
                .into_iter()
                .chain(above)
                .map(|n| n.to_string())
                .collect();
            let example = fmt_shape(&at(above.or(below)?));
            Some(format!(
                "the nearest input sizes that lose nothing are {} (`{}: {example}`)",
                sizes.join(" and "),
                self.input_name
            ))
        })();
        self.blocks.strict.set(true);
        result
    }
}
