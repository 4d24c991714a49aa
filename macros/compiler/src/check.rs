//! Checks that span the whole network: declared shapes (input, assertions,
//! output) against the inferred ones, and the search for a fix when a shape
//! disagrees. Every failure becomes one error at its own tokens, with the
//! arithmetic that led there.

use crate::ast::{DimLit, Network, ShapeLit};
use crate::diag::{Ctxt, SpanRange};
use crate::infer::{conv_padding, infer, shape_of, Inferred, Overrides};
use crate::resolve::{Item, MergeKind, Node, NodeKind, Op, Program};
use crate::shape::{fmt_shape, Dim, Shape};

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
}

/// Rule: a network's input shape has dims >= 1 and no `_`.
///
/// ```text
/// pub Net(x: [B, 0, _, 28]) ..   // error at `0` and at `_`
/// ```
pub fn check_input_shape(cx: &Ctxt, lit: &ShapeLit) {
    for d in &lit.dims {
        match d {
            DimLit::Lit(0, s) => cx.error(SpanRange::single(*s), "an input dim must be at least 1"),
            DimLit::Wild(s) => cx.error(
                SpanRange::single(*s),
                "`_` is only allowed in shape assertions; the input needs a number or a symbol \
                 (`B`) for every dim",
            ),
            _ => {}
        }
    }
}

fn agrees(inferred: &Shape, lit: &ShapeLit) -> bool {
    inferred.len() == lit.dims.len()
        && inferred.iter().zip(&lit.dims).all(|(d, l)| match (d, l) {
            (_, DimLit::Wild(_)) => true,
            (Dim::Known(a), DimLit::Lit(b, _)) => a == b,
            (Dim::Sym(a), DimLit::Sym(b)) => b == a.as_str(),
            _ => false,
        })
}

/// Rule: a shape assertion `: [..]` equals the shape inferred at that point.
///
/// ```text
/// x -> conv1: Conv2d(6, kernel = 5) -> max_pool(2) : [B, 6, 14, 14]   // 28 -> 24 -> 12
/// ```
pub fn assertion(item: usize, inferred: &Shape, lit: &ShapeLit, prev: &str) -> Option<Failure> {
    (!agrees(inferred, lit)).then(|| Failure {
        item,
        span: lit.span,
        message: format!(
            "shape assertion failed: {prev} gives {}, but the assertion says {}",
            fmt_shape(inferred),
            fmt_shape(&shape_of(lit))
        ),
        kind: FailKind::Mismatch,
        tail: Vec::new(),
        help: vec![format!("assert `: {}`", fmt_shape(inferred))],
    })
}

/// Rule: the declared output `-> [..]` equals the last layer's shape.
pub fn declared_output(
    item: usize,
    inferred: &Shape,
    lit: &ShapeLit,
    prev: &str,
) -> Option<Failure> {
    (!agrees(inferred, lit)).then(|| Failure {
        item,
        span: lit.span,
        message: format!(
            "the network is declared to give {}, but {prev} gives {}",
            fmt_shape(&shape_of(lit)),
            fmt_shape(inferred)
        ),
        kind: FailKind::Mismatch,
        tail: Vec::new(),
        help: vec![format!("declare `-> {}`", fmt_shape(inferred))],
    })
}

/// Infers the network's shapes and reports every failure, each with the
/// chain of sizes that led to it and a fix where one is found.
/// What inference learned about a whole network: every value's shape
/// (`None` where an error made it unknown) and each chain node's details.
pub struct ProgramShapes {
    pub values: Vec<Option<Shape>>,
    /// Per node: the chain's inference (`None` for merges and chains whose
    /// input is unknown).
    pub chains: Vec<Option<Inferred>>,
}

/// Infers every value of the network's graph and reports every failure,
/// each with the chain of sizes that led to it and a fix where one is found.
pub fn check_network(cx: &Ctxt, net: &Network, program: &Program) -> ProgramShapes {
    check_input_shape(cx, &net.input_shape);
    let input = shape_of(&net.input_shape);
    let mut values: Vec<Option<Shape>> = vec![Some(input)];
    let mut chains = Vec::with_capacity(program.nodes.len());
    for (i, node) in program.nodes.iter().enumerate() {
        let is_output = program.output == Some(i + 1);
        let (value, chain) = match &node.kind {
            NodeKind::Chain { input, items } => {
                match input.and_then(|v| values.get(v).cloned().flatten()) {
                    Some(shape) => {
                        let decl = if is_output {
                            net.output_shape.as_ref()
                        } else {
                            None
                        };
                        let result = check_chain(cx, &shape, items, decl);
                        (result.output.clone(), Some(result))
                    }
                    None => (None, None),
                }
            }
            NodeKind::Merge { kind, inputs, span } => {
                let shapes: Option<Vec<(Shape, SpanRange, String)>> = inputs
                    .iter()
                    .map(|(v, s)| {
                        let v = (*v)?;
                        let shape = values.get(v).cloned().flatten()?;
                        Some((shape, *s, value_name(net, program, v)))
                    })
                    .collect();
                let out =
                    shapes.and_then(|shapes| match crate::infer::merge(*kind, &shapes, *span) {
                        Ok(shape) => Some(shape),
                        Err((span, message)) => {
                            cx.error(span, message);
                            None
                        }
                    });
                if let (true, Some(decl), Some(shape)) =
                    (is_output, net.output_shape.as_ref(), &out)
                {
                    if let Some(f) = declared_output(0, shape, decl, "the network") {
                        cx.error(
                            f.span,
                            format!("{}\nhelp: {}", f.message, f.help.join("\n      or ")),
                        );
                    }
                }
                (out, None)
            }
        };
        values.push(value);
        chains.push(chain);
    }
    if let (Some(0), Some(decl)) = (program.output, net.output_shape.as_ref()) {
        if let Some(f) =
            declared_output(0, &values[0].clone().unwrap_or_default(), decl, "the input")
        {
            cx.error(f.span, f.message);
        }
    }
    ProgramShapes { values, chains }
}

/// How a value is called in messages: its `let` name, or what made it.
pub fn value_name(net: &Network, program: &Program, value: usize) -> String {
    match program.node_of(value) {
        None => format!("`{}`", net.input),
        Some(Node { name: Some(n), .. }) => format!("`{n}`"),
        Some(Node {
            kind: NodeKind::Merge { kind, .. },
            ..
        }) => match kind {
            MergeKind::Cat { .. } => "the `cat`".to_string(),
            MergeKind::Crop => "the `crop`".to_string(),
            MergeKind::Binary(op) => format!("the `{}`", op.symbol()),
        },
        Some(Node {
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

/// One chain: infer it from `input`, report its failures.
fn check_chain(cx: &Ctxt, input: &Shape, items: &[Item], decl: Option<&ShapeLit>) -> Inferred {
    let result = infer(input, items, decl, Overrides::default());
    for f in &result.failures {
        let mut message = f.message.clone();
        let mut help = Vec::new();
        if f.kind == FailKind::Mismatch {
            for line in trace_before(&result, f.item) {
                message.push_str("\n  ");
                message.push_str(&line);
            }
            help.extend(fixes(input, items, decl, f));
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
        cx.error(f.span, message);
    }
    result
}

/// The arithmetic of every step before `item` that changed the shape, and
/// the spatial sizes in a line (`H: 28 -> 24 -> 12 -> 8 -> 4`).
fn trace_before(result: &Inferred, item: usize) -> Vec<String> {
    let nodes = &result.nodes[..item.min(result.nodes.len())];
    let mut lines: Vec<String> = nodes.iter().filter_map(|n| n.trace.clone()).collect();
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
    if sizes.len() > 2 {
        lines.push(format!("H: {}", sizes.join(" -> ")));
    }
    lines
}

/// Searches earlier convolutions for a padding that makes failure `f` go
/// away without breaking anything before it. Written paddings come first
/// (the likely cause), then the smallest change.
fn fixes(input: &Shape, items: &[Item], decl: Option<&ShapeLit>, f: &Failure) -> Vec<String> {
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
            let trial = infer(input, items, decl, ov);
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
