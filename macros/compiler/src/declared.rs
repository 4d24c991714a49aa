//! Declared shapes: a network's input literals, the assertions `: [..]`
//! written in a chain and the declared outputs `-> [..]`, evaluated with
//! the names in scope and compared with what inference found. These rules
//! belong to no stage: inference applies an assertion where it is written
//! (the chain carries on with the asserted shape), and check reports.

use proc_macro2::Ident;

use crate::ast::{ArithOp, DimExpr, DimLit, ShapeLit};
use crate::diag::{Ctxt, SpanRange};
use crate::infer::{FailKind, Failure};
use crate::resolve::{Env, EnvVal};
use crate::shape::Constraints;
use crate::shape::{fmt_shape, Dim, Shape};

/// Rule: a network's input shape has dims >= 1 and no `_`.
///
/// ```text
/// pub Net(x: [B, 0, _, 28]) ..   // error at `0` and at `_`
/// ```
pub fn check_input_shape(cx: &Ctxt, lit: &ShapeLit) {
    // A symbol for a dim written wrong: the usual one for its place, unless
    // the shape uses it already.
    let rank = lit.dims.len();
    let symbol = |i: usize| {
        let usual: &[&str] = match (rank, i) {
            (_, 0) => &["B", "N"],
            (4, 1) | (3, 1) if rank == 4 => &["C"],
            (4, 2) => &["H"],
            (4, 3) => &["W"],
            (3, 1) => &["T", "L"],
            _ => &["D", "E", "F"],
        };
        let written = lit.symbols();
        usual
            .iter()
            .chain(["D1", "D2", "D3", "D4"].iter())
            .find(|s| !written.iter().any(|w| w == *s))
            .copied()
            .unwrap_or("D")
    };
    for (i, d) in lit.dims.iter().enumerate() {
        match d {
            DimLit::Lit(0, s) => cx.error(
                SpanRange::single(*s),
                "an input dim must be at least 1\nhelp: write `1`, or a symbol for a size the input decides",
            ),
            DimLit::Wild(s) => cx.error(
                SpanRange::single(*s),
                format!(
                    "`_` is only allowed in shape assertions; the input needs a number or a symbol \
                     (`B`) for every dim\nhelp: write `{}`, a symbol the input decides",
                    symbol(i)
                ),
            ),
            DimLit::Expr(e, s) => cx.error(
                *s,
                format!(
                    "a network's input dims are numbers or symbols; arithmetic (`H / 2`) belongs in \
                     assertions and block shapes\nhelp: write `{}`",
                    e.first_symbol().map_or_else(|| symbol(i).to_string(), |s| s.to_string())
                ),
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
                    // `/` in a shape rounds down, as PyTorch's size
                    // formulas and Rust's integer `/` do.
                    (ArithOp::Div, Dim::Known(x), Dim::Known(y)) if *y > 0 => {
                        Some(Dim::Known(x / y))
                    }
                    (ArithOp::Div, _, Dim::Known(0)) => fail("division by zero in a shape".into()),
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
                    (ArithOp::Div, Dim::Lin(l), Dim::Known(k)) if *k > 0 => {
                        Some(Dim::Lin(l.floor_div(*k)))
                    }
                    (ArithOp::Add, Dim::Lin(x), Dim::Lin(y)) if x.sym == y.sym => {
                        Some(Dim::Lin(x.add(y)))
                    }
                    (ArithOp::Sub, Dim::Lin(x), Dim::Lin(y)) if x.sym == y.sym => {
                        let d = x.sub(y);
                        match (d.constant(), d.min_sym(0)) {
                            // The same value at every size: a number.
                            (Some(c), _) if c >= 0 => Some(Dim::Known(c as u64)),
                            (None, Some(_)) => Some(Dim::Lin(d)),
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

/// Whether `inferred` is the written shape: a dim equal to the written one
/// only for some values of its symbol (`2*(H/2)` written `H`) agrees under
/// a rule on the input, recorded in `rules` (`why` names the shape).
fn agrees(inferred: &Shape, lit: &ShapeLit, env: &Env, rules: &mut Constraints, why: &str) -> bool {
    let scratch = Ctxt::new();
    if inferred.len() != lit.dims.len() {
        return false;
    }
    // On a copy: a shape that does not agree leaves no rule behind.
    let mut trial = rules.clone();
    for (d, l) in inferred.iter().zip(&lit.dims) {
        if let DimLit::Wild(_) = l {
            continue;
        }
        let Some(w) = eval_dim(&scratch, l, env) else {
            return false;
        };
        if trial.need_equal(&w, d, why) != Ok(true) {
            return false;
        }
    }
    *rules = trial;
    true
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
    rules: &mut Constraints,
) -> Option<Failure> {
    let why = format!("the assertion after {prev}");
    disagreement(item, inferred, lit, env, owner, (rules, &why), |written| {
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
    (rules, why): (&mut Constraints, &str),
    texts: impl FnOnce(String) -> (String, String),
) -> Option<Failure> {
    if agrees(inferred, lit, env, rules, why) {
        return None;
    }
    let (message, help) = texts(format!("{}{}", shape_text(lit), evaluated(lit, env)));
    // In a block, the fix is written in the block's names, so that it
    // holds at every use.
    let help = if owner == "block" {
        vec![help.replace(&fmt_shape(inferred), &in_names(inferred, lit, env))]
    } else {
        numeric_help(owner, help)
    };
    Some(Failure {
        item,
        span: lit.span,
        message,
        kind: FailKind::Mismatch,
        tail: Vec::new(),
        help,
        reported: false,
        wants_input: None,
    })
}

/// An inferred shape written in the names of the written one: a dim that
/// agrees keeps its text; one that is its symbol's value, a whole fraction
/// or multiple of it becomes `H`, `H/2`, `2*H`; else a name in scope with
/// that value (`out`), else the number.
fn in_names(inferred: &Shape, lit: &ShapeLit, env: &Env) -> String {
    let scratch = Ctxt::new();
    let value = |name: &str| match env.get(name) {
        Some(EnvVal::Int(n)) if *n > 0 => Some(*n as u64),
        Some(EnvVal::Dim(Dim::Known(n))) => Some(*n),
        _ => None,
    };
    let mut names: Vec<&String> = env.keys().collect();
    names.sort();
    let dims: Vec<String> = inferred
        .iter()
        .enumerate()
        .map(|(i, got)| {
            let written = lit.dims.get(i);
            if let Some(w) = written {
                if eval_dim(&scratch, w, env).as_ref() == Some(got) {
                    return dim_text(w);
                }
            }
            let Dim::Known(a) = got else {
                return got.to_string();
            };
            let sym = match written {
                Some(DimLit::Sym(s)) => Some(s.to_string()),
                Some(DimLit::Expr(e, _)) => e.first_symbol().map(|s| s.to_string()),
                _ => None,
            };
            if let Some((s, v)) = sym.and_then(|s| value(&s).map(|v| (s, v))) {
                if v == *a {
                    return s;
                } else if *a > 0 && v % a == 0 {
                    return format!("{s}/{}", v / a);
                } else if v > 0 && a % v == 0 {
                    return format!("{}*{s}", a / v);
                }
            }
            names
                .iter()
                .find(|n| value(n) == Some(*a))
                .map_or_else(|| a.to_string(), |n| n.to_string())
        })
        .collect();
    format!("[{}]", dims.join(", "))
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
    rules: &mut Constraints,
) -> Option<Failure> {
    let why = format!("the {owner}'s declared output");
    disagreement(item, inferred, lit, env, owner, (rules, &why), |written| {
        (
            format!(
                "the {owner} is declared to give {written}, but {prev} gives {}",
                fmt_shape(inferred)
            ),
            format!("declare `-> {}`", fmt_shape(inferred)),
        )
    })
}
