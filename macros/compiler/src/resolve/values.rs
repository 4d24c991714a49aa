//! Named values and compile-time arithmetic: `let hidden = C * t;`, the
//! substitution of block parameters and named values into arguments
//! (`subst`), and `if` conditions (`eval_cond`).

use std::fmt;

use proc_macro2::Ident;

use super::graph::Resolver;
use super::{Env, EnvVal};
use crate::ast::{ArithOp, CmpOp, Cond, Value};
use crate::diag::{did_you_mean, Ctxt, SpanRange};
use crate::shape::Dim;

impl Resolver<'_> {
    /// Whether `v`, which reads both as a number and as tensor arithmetic
    /// (`let y = x;`, `let s = a + b;`), names only numbers.
    pub(super) fn names_a_value(&self, v: &Value) -> bool {
        let mut numbers = true;
        v.visit_idents(&mut |i| {
            let name = i.to_string();
            let tensor = *self.input == name || self.names.iter().any(|(n, ..)| *n == name);
            numbers &= !tensor && self.env.contains_key(&name);
        });
        numbers
    }

    /// `let hidden = C * t;`: the number (or, over the input's symbolic
    /// sizes, the size) is known by `name` from here on.
    pub(super) fn value_let(&mut self, name: &Ident, v: &Value) {
        let text = name.to_string();
        let taken = if *self.input == text || self.names.iter().any(|(n, ..)| *n == text) {
            Some("a tensor")
        } else if self.scope.env.contains_key(&text) {
            Some(if self.scope.owner == "block" {
                "a parameter or a size of the block's input"
            } else {
                "a size of the input"
            })
        } else if self.env.contains_key(&text) {
            Some("an earlier value")
        } else {
            None
        };
        if let Some(what) = taken {
            self.cx.error(
                SpanRange::single(name.span()),
                format!(
                    "`{text}` is already bound, as {what}\n\
                     help: give this value another name, e.g. `{text}2` (and its uses)"
                ),
            );
            return;
        }
        let mut unknown = None;
        v.visit_idents(&mut |i| {
            if unknown.is_none() && !self.env.contains_key(&i.to_string()) {
                unknown = Some(i.clone());
            }
        });
        if let Some(i) = unknown {
            let known: Vec<&str> = self.env.keys().map(String::as_str).collect();
            let hint = match did_you_mean(&i.to_string(), known) {
                Some(s) => format!("\nhelp: did you mean `{s}`?"),
                None => String::new(),
            };
            let name = i.to_string();
            let tensor = *self.input == name || self.names.iter().any(|(n, ..)| *n == name);
            let what = if tensor {
                format!("`{i}` is a tensor: a named value is arithmetic over numbers")
            } else {
                format!(
                    "unknown name `{i}`: a named value is arithmetic over numbers, {}and earlier values",
                    if self.scope.owner == "block" {
                        "block parameters, sizes of the input "
                    } else {
                        "sizes of the input "
                    }
                )
            };
            self.cx
                .error(SpanRange::single(i.span()), format!("{what}{hint}"));
            self.env.insert(text, EnvVal::Failed);
            return;
        }
        let symbolic = {
            let mut any = false;
            v.visit_idents(&mut |i| {
                any |= matches!(self.env.get(&i.to_string()), Some(EnvVal::Dim(d)) if d.known().is_none());
            });
            any
        };
        let bound = if symbolic {
            // Over a symbolic size the value is a size too: usable in shapes.
            crate::ast::value_to_dim(v)
                .map_err(|e| self.cx.syn_error(e))
                .ok()
                .and_then(|lit| crate::declared::eval_dim(self.cx, &lit, &self.env))
                .map(EnvVal::Dim)
        } else {
            match subst(self.cx, &self.env, v) {
                Some(Value::Int(n, _)) => Some(EnvVal::Int(n)),
                Some(Value::Float(x, _)) => Some(EnvVal::Float(x)),
                Some(Value::Bool(b, _)) => Some(EnvVal::Bool(b)),
                Some(other) => {
                    self.cx.error(
                        other.span(),
                        format!("a named value is a number, not {}", other.kind()),
                    );
                    None
                }
                None => None,
            }
        };
        self.env.insert(text, bound.unwrap_or(EnvVal::Failed));
    }
}

/// `value` with block parameters and known dims put in, and arithmetic done.
/// `None` after an error (reported).
pub fn subst(cx: &Ctxt, env: &Env, v: &Value) -> Option<Value> {
    match v {
        Value::Ident(i) => match env.get(&i.to_string()) {
            None => Some(v.clone()),
            Some(val) => {
                let s = SpanRange::single(i.span());
                match val {
                    EnvVal::Int(n) => Some(Value::Int(*n, s)),
                    EnvVal::Float(x) => Some(Value::Float(*x, s)),
                    EnvVal::Bool(b) => Some(Value::Bool(*b, s)),
                    EnvVal::Dim(Dim::Known(n)) => Some(Value::Int(*n as i64, s)),
                    EnvVal::Failed => None,
                    EnvVal::Dim(d) => {
                        cx.error(
                            s,
                            if *i == d.to_string() {
                                format!(
                                    "`{i}` is a size of the input, known only when the network runs; \
                                     this needs a number known at compile time"
                                )
                            } else {
                                format!(
                                    "`{i}` is `{d}` here, a size of the input known only when the network \
                                     runs; this needs a number known at compile time"
                                )
                            },
                        );
                        None
                    }
                }
            }
        },
        Value::Tuple(items, s) => {
            let items: Option<Vec<Value>> = items.iter().map(|x| subst(cx, env, x)).collect();
            Some(Value::Tuple(items?, *s))
        }
        Value::Arrow(a, b, s) => {
            let (a, b) = (subst(cx, env, a), subst(cx, env, b));
            Some(Value::Arrow(Box::new(a?), Box::new(b?), *s))
        }
        Value::Arith(op, a, b, s) => {
            let (a, b) = (subst(cx, env, a), subst(cx, env, b));
            let (a, b) = (a?, b?);
            let text = format!("{v}");
            match (&a, &b) {
                (Value::Int(x, _), Value::Int(y, _)) => {
                    let (x, y) = (*x, *y);
                    let r = match op {
                        ArithOp::Add => x.checked_add(y),
                        ArithOp::Sub => x.checked_sub(y),
                        ArithOp::Mul => x.checked_mul(y),
                        ArithOp::Div if y != 0 && x % y == 0 => Some(x / y),
                        ArithOp::Div => None,
                    };
                    if r.is_none() && *op != ArithOp::Div {
                        cx.error(*s, format!("`{text}` is too large"));
                        return None;
                    }
                    match r {
                        Some(r) => Some(Value::Int(r, *s)),
                        None => {
                            cx.error(
                                *s,
                                format!(
                                    "`{text}` = {x} / {y} is not a whole number\n\
                                     help: `/` divides exactly here; choose values that divide"
                                ),
                            );
                            None
                        }
                    }
                }
                (Value::Int(_, _) | Value::Float(..), Value::Int(_, _) | Value::Float(..)) => {
                    let f = |v: &Value| match v {
                        Value::Int(n, _) => *n as f64,
                        Value::Float(x, _) => *x,
                        _ => 0.0,
                    };
                    let (x, y) = (f(&a), f(&b));
                    Some(Value::Float(
                        match op {
                            ArithOp::Add => x + y,
                            ArithOp::Sub => x - y,
                            ArithOp::Mul => x * y,
                            ArithOp::Div => x / y,
                        },
                        *s,
                    ))
                }
                _ => {
                    let bad = if matches!(a, Value::Int(..) | Value::Float(..)) {
                        &b
                    } else {
                        &a
                    };
                    cx.error(
                        bad.span(),
                        format!("arithmetic needs numbers, but `{bad}` is {}", bad.kind()),
                    );
                    None
                }
            }
        }
        other => Some(other.clone()),
    }
}

/// Decides an `if` at compile time; `None` after an error (reported).
pub fn eval_cond(cx: &Ctxt, env: &Env, c: &Cond) -> Option<bool> {
    match c {
        Cond::Bool(b, _) => Some(*b),
        Cond::Not(c) => eval_cond(cx, env, c).map(|b| !b),
        Cond::And(a, b) => {
            let (a, b) = (eval_cond(cx, env, a), eval_cond(cx, env, b));
            Some(a? && b?)
        }
        Cond::Or(a, b) => {
            let (a, b) = (eval_cond(cx, env, a), eval_cond(cx, env, b));
            Some(a? || b?)
        }
        Cond::Cmp(op, a, b) => {
            let written = a.to_string();
            let (a, b) = (subst(cx, env, a), subst(cx, env, b));
            let (a, b) = (a?, b?);
            let ord = match (&a, &b) {
                (Value::Int(x, _), Value::Int(y, _)) => x.partial_cmp(y),
                (Value::Float(x, _), Value::Float(y, _)) => x.partial_cmp(y),
                (Value::Int(x, _), Value::Float(y, _)) => (*x as f64).partial_cmp(y),
                (Value::Float(x, _), Value::Int(y, _)) => x.partial_cmp(&(*y as f64)),
                (Value::Bool(x, _), Value::Bool(y, _)) => x.partial_cmp(y),
                (Value::Int(..) | Value::Float(..), Value::Bool(true, s2))
                    if format!("{:?}", s2.start) == format!("{:?}", a.span().start) =>
                {
                    // `if stride { .. }`: a bare number parameter.
                    cx.error(
                        a.span(),
                        format!(
                            "`{written}` is a number, not a condition\nhelp: compare it, e.g. `{written} != 1`"
                        ),
                    );
                    return None;
                }
                _ => {
                    let bad = if matches!(a, Value::Ident(_)) { &a } else { &b };
                    let msg = match bad {
                        Value::Ident(i) => {
                            let known: Vec<&str> = env.keys().map(String::as_str).collect();
                            let hint = match did_you_mean(&i.to_string(), known.iter().copied()) {
                                Some(s) => format!("\nhelp: did you mean `{s}`?"),
                                None => String::new(),
                            };
                            format!(
                                "unknown name `{i}` in a condition: a condition compares block parameters, \
                                 dims of the input and numbers{hint}"
                            )
                        }
                        _ => format!("cannot compare {} with {}", a.kind(), b.kind()),
                    };
                    cx.error(bad.span(), msg);
                    return None;
                }
            };
            let ord = ord?;
            use std::cmp::Ordering::*;
            Some(match op {
                CmpOp::Eq => ord == Equal,
                CmpOp::Ne => ord != Equal,
                CmpOp::Lt => ord == Less,
                CmpOp::Le => ord != Greater,
                CmpOp::Gt => ord == Greater,
                CmpOp::Ge => ord != Less,
            })
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n, _) => write!(f, "{n}"),
            Value::Float(x, _) => write!(f, "{x:?}"),
            Value::Bool(b, _) => write!(f, "{b}"),
            Value::Ident(i) => write!(f, "{i}"),
            Value::Tuple(items, _) => {
                let parts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
                write!(f, "({})", parts.join(", "))
            }
            Value::Arrow(a, b, _) => write!(f, "{a} -> {b}"),
            Value::Arith(op, a, b, _) => write!(f, "{a} {} {b}", op.symbol()),
        }
    }
}
