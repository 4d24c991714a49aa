//! Checks that span the whole network: declared shapes (input, assertions,
//! output) against the inferred ones, and the search for a fix when a shape
//! disagrees. Every failure becomes one error at its own tokens, with the
//! arithmetic that led there.

use proc_macro2::Ident;

use crate::ast::{ArithOp, DimExpr, DimLit, ShapeLit};
use crate::block::Blocks;
use crate::diag::{Ctxt, SpanRange};
use crate::infer::{conv_padding, infer, Inferred, Overrides};
use crate::resolve::{Env, EnvVal, Item, Node, NodeKind, Op, Program};
use crate::shape::{fmt_shape, Constraints, Dim, Shape};

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
            DimLit::Expr(_, s) => cx.error(
                *s,
                "a network's input dims are numbers or symbols; arithmetic (`H / 2`) belongs in \
                 assertions and block shapes",
            ),
            _ => {}
        }
    }
}

/// A shape as written, `[B, 2*C, H/2, _]`.
pub fn shape_text(lit: &ShapeLit) -> String {
    let dims: Vec<String> = lit.dims.iter().map(dim_text).collect();
    format!("[{}]", dims.join(", "))
}

fn dim_text(d: &DimLit) -> String {
    fn expr(e: &DimExpr, top: bool) -> String {
        match e {
            DimExpr::Num(n, _) => n.to_string(),
            DimExpr::Sym(s) => s.to_string(),
            DimExpr::Bin(op, a, b) => {
                let t = format!("{}{}{}", expr(a, false), op.symbol(), expr(b, false));
                if top {
                    t
                } else {
                    format!("({t})")
                }
            }
        }
    }
    match d {
        DimLit::Lit(n, _) => n.to_string(),
        DimLit::Sym(s) => s.to_string(),
        DimLit::Wild(_) => "_".to_string(),
        DimLit::Expr(e, _) => expr(e, true),
    }
}

/// The dim a written dim stands for, with `env`'s names put in; `None` for
/// `_`, or after an error (reported).
pub fn eval_dim(cx: &Ctxt, d: &DimLit, env: &Env) -> Option<Dim> {
    fn sym(cx: &Ctxt, s: &Ident, env: &Env) -> Option<Dim> {
        match env.get(&s.to_string()) {
            None => Some(Dim::sym(s.to_string())),
            Some(EnvVal::Dim(d)) => Some(d.clone()),
            Some(EnvVal::Int(n)) if *n >= 0 => Some(Dim::Known(*n as u64)),
            Some(EnvVal::Failed) => None,
            Some(_) => {
                cx.error(
                    SpanRange::single(s.span()),
                    format!(
                        "`{s}` is not a size: a dim is a number, a symbol or arithmetic over them"
                    ),
                );
                None
            }
        }
    }
    fn expr(cx: &Ctxt, e: &DimExpr, env: &Env, span: SpanRange) -> Option<Dim> {
        match e {
            DimExpr::Num(n, _) => Some(Dim::Known(*n)),
            DimExpr::Sym(s) => sym(cx, s, env),
            DimExpr::Bin(op, a, b) => {
                let (a, b) = (expr(cx, a, env, span)?, expr(cx, b, env, span)?);
                let fail = |why: String| {
                    cx.error(span, why);
                    None
                };
                let big = |v: Option<u64>| match v {
                    Some(v) if v < 1 << 48 => Some(Dim::Known(v)),
                    _ => {
                        cx.error(span, "this dim is too large");
                        None
                    }
                };
                match (op, &a, &b) {
                    (ArithOp::Add, Dim::Known(x), Dim::Known(y)) => big(x.checked_add(*y)),
                    (ArithOp::Sub, Dim::Known(x), Dim::Known(y)) if x >= y => {
                        Some(Dim::Known(x - y))
                    }
                    (ArithOp::Mul, Dim::Known(x), Dim::Known(y)) => big(x.checked_mul(*y)),
                    (ArithOp::Div, Dim::Known(x), Dim::Known(y)) if *y > 0 && x % y == 0 => {
                        Some(Dim::Known(x / y))
                    }
                    (ArithOp::Div, Dim::Known(x), Dim::Known(y)) => fail(format!(
                        "{x} / {y} is not a whole number: `/` in a shape divides exactly"
                    )),
                    (ArithOp::Sub, Dim::Known(x), Dim::Known(y)) => {
                        fail(format!("{x} - {y} is negative"))
                    }
                    (ArithOp::Add, Dim::Lin(l), Dim::Known(k))
                    | (ArithOp::Add, Dim::Known(k), Dim::Lin(l)) => {
                        Some(Dim::Lin(l.shift(*k as i64)))
                    }
                    (ArithOp::Sub, Dim::Lin(l), Dim::Known(k)) => {
                        Some(Dim::Lin(l.shift(-(*k as i64))))
                    }
                    (ArithOp::Mul, Dim::Lin(l), Dim::Known(k))
                    | (ArithOp::Mul, Dim::Known(k), Dim::Lin(l))
                        if *k > 0 =>
                    {
                        Some(Dim::Lin(l.scale(*k)))
                    }
                    (ArithOp::Div, Dim::Lin(l), Dim::Known(k)) if *k > 0 => match l.div_exact(*k) {
                        Some(l) => Some(Dim::Lin(l)),
                        None => fail(format!("({l}) / {k} leaves a fraction")),
                    },
                    (ArithOp::Add, Dim::Lin(x), Dim::Lin(y)) if x.sym == y.sym => {
                        Some(Dim::Lin(x.add(y)))
                    }
                    (ArithOp::Sub, Dim::Lin(x), Dim::Lin(y)) if x.sym == y.sym => {
                        // x - y = (qx - qy)*S + (ox - oy)
                        let (a, b) = (x.num * y.den, y.num * x.den);
                        let den = x.den * y.den;
                        let off = x.off - y.off;
                        match a.cmp(&b) {
                            std::cmp::Ordering::Equal if off >= 0 => Some(Dim::Known(off as u64)),
                            std::cmp::Ordering::Greater => Some(Dim::Lin(
                                crate::shape::Lin::sym(x.sym.clone())
                                    .scale(a - b)
                                    .floor_div(den)
                                    .shift(off),
                            )),
                            _ => fail(format!("{a} - {b} can be negative", a = x, b = y)),
                        }
                    }
                    _ => Some(Dim::Sym(format!("{a}{}{b}", op.symbol()))),
                }
            }
        }
    }
    match d {
        DimLit::Lit(n, _) => Some(Dim::Known(*n)),
        DimLit::Sym(s) => sym(cx, s, env),
        DimLit::Wild(_) => None,
        DimLit::Expr(e, span) => expr(cx, e, env, *span),
    }
}

/// A written shape evaluated in `env`; `_` and failed dims become `_`.
pub fn eval_shape(cx: &Ctxt, lit: &ShapeLit, env: &Env) -> Shape {
    lit.dims
        .iter()
        .map(|d| eval_dim(cx, d, env).unwrap_or_else(|| Dim::Sym("_".into())))
        .collect()
}

fn agrees(inferred: &Shape, lit: &ShapeLit, env: &Env) -> bool {
    let scratch = Ctxt::new();
    inferred.len() == lit.dims.len()
        && inferred.iter().zip(&lit.dims).all(|(d, l)| match l {
            DimLit::Wild(_) => true,
            l => eval_dim(&scratch, l, env).as_ref() == Some(d),
        })
}

/// Rule: a shape assertion `: [..]` equals the shape inferred at that point.
///
/// ```text
/// x -> conv1: Conv2d(6, kernel = 5) -> max_pool(2) : [B, 6, 14, 14]   // 28 -> 24 -> 12
/// ```
pub fn assertion(
    item: usize,
    inferred: &Shape,
    lit: &ShapeLit,
    prev: &str,
    env: &Env,
    owner: &str,
) -> Option<Failure> {
    disagreement(item, inferred, lit, env, owner, |written| {
        (
            format!(
                "shape assertion failed: {prev} gives {}, but the assertion says {written}",
                fmt_shape(inferred)
            ),
            format!("assert `: {}`", fmt_shape(inferred)),
        )
    })
}

/// A failure when `inferred` does not agree with the written `lit`:
/// `texts(written shape)` gives the message and the fix in numbers.
fn disagreement(
    item: usize,
    inferred: &Shape,
    lit: &ShapeLit,
    env: &Env,
    owner: &str,
    texts: impl FnOnce(String) -> (String, String),
) -> Option<Failure> {
    if agrees(inferred, lit, env) {
        return None;
    }
    let (message, help) = texts(format!("{}{}", shape_text(lit), evaluated(lit, env)));
    Some(Failure {
        item,
        span: lit.span,
        message,
        kind: FailKind::Mismatch,
        tail: Vec::new(),
        help: numeric_help(owner, help),
        reported: false,
    })
}

/// ` (= [B, 16, 16, 16] here)` when a written shape has names or arithmetic
/// that evaluate to something else, and why a dim did not evaluate.
fn evaluated(lit: &ShapeLit, env: &Env) -> String {
    let scratch = Ctxt::new();
    let shape = eval_shape(&scratch, lit, env);
    let errors = scratch.into_errors();
    let text = fmt_shape(&shape);
    let mut out = if text != shape_text(lit) && errors.is_empty() {
        format!(" (= {text} here)")
    } else {
        String::new()
    };
    for e in errors {
        out.push_str(&format!("\n  {}", e.message));
    }
    out
}

/// A fix in numbers suits a network; in a block it would break the other
/// uses, so none is offered there.
fn numeric_help(owner: &str, help: String) -> Vec<String> {
    if owner == "block" {
        Vec::new()
    } else {
        vec![help]
    }
}

/// Rule: the declared output `-> [..]` equals the last layer's shape.
pub fn declared_output(
    item: usize,
    inferred: &Shape,
    lit: &ShapeLit,
    prev: &str,
    env: &Env,
    owner: &str,
) -> Option<Failure> {
    disagreement(item, inferred, lit, env, owner, |written| {
        (
            format!(
                "the {owner} is declared to give {written}, but {prev} gives {}",
                fmt_shape(inferred)
            ),
            format!("declare `-> {}`", fmt_shape(inferred)),
        )
    })
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
}

/// Infers every value of a graph (a network's, or a block instance's) and
/// reports every failure, each with the chain of sizes that led to it and
/// a fix where one is found.
#[allow(clippy::too_many_arguments)]
pub fn check_program(
    cx: &Ctxt,
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
    let mut constraints = Constraints::default();
    // Each node's further outputs (a `chunk`'s pieces after the first).
    let mut further: Vec<Vec<Shape>> = Vec::with_capacity(program.nodes.len());
    let name_of = |v: usize| value_name(input_name, program, v);
    for (i, node) in program.nodes.iter().enumerate() {
        let is_output = program.output == Some(i + 1);
        let decl = if is_output { out_decl } else { None };
        if let Some(f) = merge_of_ids(node, &ids, &name_of) {
            cx.error(f.0, f.1);
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
                        let ctx = crate::infer::InferCx {
                            blocks,
                            env,
                            report,
                            owner,
                            values: &values,
                            ids: input.is_some_and(|v| ids.get(v) == Some(&true)),
                        };
                        let result = check_chain(cx, &shape, items, decl, &ctx);
                        constraints.merge(&result.constraints);
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
                if let (Some(decl), Some(shape)) = (decl, &out) {
                    if let Some(f) = declared_output(0, shape, decl, what, env, owner) {
                        cx.error(f.span, f.message);
                    }
                }
                (out, None)
            }
            NodeKind::Select { value, .. } => {
                let out = value.and_then(|v| values.get(v).cloned().flatten());
                if let (Some(decl), Some(shape)) = (decl, &out) {
                    if let Some(f) = declared_output(0, shape, decl, "the branch", env, owner) {
                        cx.error(f.span, f.message);
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
                let out = shapes.and_then(|shapes| {
                    match crate::ops::merge::infer(kind, &shapes, *span, &mut constraints) {
                        Ok(mut outs) if !outs.is_empty() => {
                            more = outs.split_off(1);
                            outs.pop()
                        }
                        Ok(_) => None,
                        Err((span, message)) => {
                            // How each input got its shape: the arithmetic of
                            // the chain that made it.
                            let mut message = message;
                            let mut derivations = Vec::new();
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
                                let skip = traces.len().saturating_sub(3);
                                let mut line = format!("{} came from", name_of(v));
                                if skip > 0 {
                                    line.push_str(&format!(" ({skip} earlier steps) .."));
                                }
                                derivations.push(line);
                                for t in &traces[skip..] {
                                    derivations.push(format!("  {t}"));
                                }
                            }
                            // A recurrent layer's final state is not a
                            // sequence: say what it holds.
                            for (v, _) in inputs {
                                let Some(Node {
                                    kind: NodeKind::Output { src: Some(src), index },
                                    ..
                                }) = v.and_then(|v| program.node_of(v))
                                else {
                                    continue;
                                };
                                let Some(Node {
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
                            cx.error(span, message);
                            None
                        }
                    }
                });
                if let (Some(decl), Some(shape)) = (decl, &out) {
                    let what = format!("the `{}`", kind.symbol());
                    if let Some(f) = declared_output(0, shape, decl, &what, env, owner) {
                        let help = if f.help.is_empty() {
                            String::new()
                        } else {
                            format!("\nhelp: {}", f.help.join("\n      or "))
                        };
                        cx.error(f.span, format!("{}{help}", f.message));
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
        ) {
            cx.error(f.span, f.message);
        }
    }
    ProgramShapes {
        values,
        chains,
        constraints,
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
        let Some(shape) = v.and_then(|v| shapes.values.get(v).cloned().flatten()) else {
            continue;
        };
        let what = format!("output {}", k + 2);
        if let Some(f) = declared_output(0, &shape, decl, &what, env, "network") {
            let help = if f.help.is_empty() {
                format!("declare it as `{}`", fmt_shape(&shape))
            } else {
                f.help.join("\n      or ")
            };
            cx.error(f.span, format!("{}\nhelp: {help}", f.message));
        }
    }
}

/// Rule: a merge (`+`, `cat`, `crop`, `chunk`) takes floats, never token ids.
///
/// ```text
/// pub Net(ids: [B, T] u32) { let e = ids -> emb: Embedding(10, 4); cat(ids, e, dim = 1) }
/// ```
fn merge_of_ids(
    node: &Node,
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
        Some(Node { name: Some(n), .. }) => format!("`{n}`"),
        Some(Node {
            kind: NodeKind::Merge { kind, .. },
            ..
        }) => format!("the `{}`", kind.symbol()),
        Some(Node {
            kind: NodeKind::Select { .. },
            ..
        }) => "the `if`".to_string(),
        Some(Node {
            kind: NodeKind::Input { .. },
            ..
        }) => "a further input".to_string(),
        Some(Node {
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
fn check_chain(
    cx: &Ctxt,
    input: &Shape,
    items: &[Item],
    decl: Option<&ShapeLit>,
    ctx: &crate::infer::InferCx,
) -> Inferred {
    let result = infer(input, items, decl, Overrides::default(), ctx);
    for f in &result.failures {
        let mut message = f.message.clone();
        let mut help = Vec::new();
        if f.kind == FailKind::Mismatch {
            for line in trace_before(&result, f.item) {
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
fn fixes(
    input: &Shape,
    items: &[Item],
    decl: Option<&ShapeLit>,
    f: &Failure,
    ctx: &crate::infer::InferCx,
) -> Vec<String> {
    let ctx = crate::infer::InferCx {
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
