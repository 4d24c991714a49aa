//! The dataflow graph of a body: `let`s, tensor names, graph ops (`+`,
//! `cat`, `crop`, `chunk`), `if` branches and chains, each a node; every
//! name checked to be bound and used.

use std::collections::HashMap;

use proc_macro2::Ident;

use super::chain::{flatten, number_unnamed};
use super::{eval_cond, Env, Item, MergeKind, Node, NodeKind, Op, Program, Scope};
use crate::ast::{Body, ChainItem, CropTo};
use crate::diag::{did_you_mean, Ctxt, SpanRange};
use crate::ops;

pub(super) struct Resolver<'a> {
    pub(super) cx: &'a Ctxt,
    pub(super) scope: Scope<'a>,
    /// The scope's names and the body's named values so far.
    pub(super) env: Env,
    pub(super) input: &'a Ident,
    pub(super) nodes: Vec<Node>,
    /// `let` names: value, the name, whether it is used.
    pub(super) names: Vec<(String, Option<usize>, Ident, bool)>,
    pub(super) seen: HashMap<String, SpanRange>,
    pub(super) branch: Vec<(usize, bool)>,
}

/// A body's dataflow graph, every layer resolved against `scope`.
/// `extra`: a block's further tensor inputs, bound like `let`s to values
/// 1, 2, ..
pub fn resolve_body(
    cx: &Ctxt,
    scope: Scope,
    input: &Ident,
    extra: &[Ident],
    body: Option<&Body>,
) -> Program {
    let Some(body) = body else {
        return Program {
            nodes: Vec::new(),
            output: None,
            extra_outputs: Vec::new(),
            env: scope.env.clone(),
        };
    };
    let mut r = Resolver {
        cx,
        scope,
        env: scope.env.clone(),
        input,
        nodes: Vec::new(),
        names: Vec::new(),
        seen: HashMap::new(),
        branch: Vec::new(),
    };
    for (k, name) in extra.iter().enumerate() {
        let value = r.push(NodeKind::Input { index: k + 1 }, name.to_string());
        if let Some(node) = r.nodes.last_mut() {
            node.name = Some(name.clone());
        }
        r.names.push((name.to_string(), value, name.clone(), false));
    }
    for l in &body.lets {
        let expr = match (&l.expr, &l.value) {
            (Some(e), Some(v)) if !r.names_a_value(v) => e,
            (Some(e), None) => e,
            (_, Some(v)) => {
                r.value_let(&l.names[0], v);
                continue;
            }
            (None, None) => continue,
        };
        let values = match (&expr.head, l.names.len()) {
            (crate::ast::Head::Split { .. }, _) if l.pattern.is_nested() => {
                cx.error(
                    l.pattern.span(),
                    format!(
                        "`chunk`/`split` gives a flat list of tensors, but the pattern `{}` nests\n\
                         help: write `let ({}) = ..`",
                        l.pattern.text(),
                        l.names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                );
                vec![None; l.names.len()]
            }
            (crate::ast::Head::Split { .. }, _) if expr.items.is_empty() => r.split(expr, &l.names),
            (crate::ast::Head::Split { span, .. }, _) => {
                cx.error(
                    *span,
                    "a `chunk`/`split` gives several tensors: bind them first, \
                     `let (a, b) = chunk(x, 2, dim = 1);`, then chain each",
                );
                vec![None; l.names.len()]
            }
            (_, 1)
                if !matches!(l.pattern, crate::ast::Pattern::Tuple(..)) || l.names.len() == 1 =>
            {
                vec![r.expr(expr)]
            }
            _ if ends_in_recurrent(expr) => {
                let value = r.expr(expr);
                r.states(value, &l.pattern, expr.id)
            }
            (_, n) => {
                cx.error(
                    l.names[0].span().into_range(l.names[n - 1].span()),
                    format!(
                        "`let ({})` binds {n} tensors, but this expression gives one\n\
                         help: several names come from `chunk(x, {n}, dim = 1)` or `split(x, [..], dim = 1)`, \
                         or from a recurrent layer ending the chain: `let (y, h) = x -> gru: GRU(64);`",
                        l.names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                );
                vec![None; n]
            }
        };
        for (ident, value) in l.names.iter().zip(values) {
            let name = ident.to_string();
            if name == "_" {
                continue;
            }
            if *input == name || r.names.iter().any(|(n, ..)| *n == name) {
                cx.error(
                    SpanRange::single(ident.span()),
                    format!(
                        "`{name}` is already bound\n\
                         help: give this tensor another name, e.g. `{name}2` (and its uses)"
                    ),
                );
            }
            if let Some(node) = value
                .and_then(|v| v.checked_sub(1))
                .and_then(|i| r.nodes.get_mut(i))
            {
                if node.name.is_none() {
                    node.name = Some(ident.clone());
                }
            }
            r.names.push((name, value, ident.clone(), false));
        }
    }
    let output = r.expr(&body.output);
    let extra_outputs: Vec<Option<usize>> = body.extra_outputs.iter().map(|e| r.expr(e)).collect();
    // After an unknown name, an unused `let` is most likely the same typo.
    let unknown_before = cx.error_count() > 0;
    for (name, _, ident, used) in &r.names {
        if !used && !unknown_before {
            let message = if extra.contains(ident) {
                format!(
                    "the input `{name}` is never used\nhelp: use it (by name: a merge, or a layer's \
                     `init`/`lengths`), or remove it"
                )
            } else {
                format!("`{name}` is bound but never used\nhelp: use it, or remove the `let`")
            };
            cx.error(SpanRange::single(ident.span()), message);
        }
    }
    number_unnamed(&mut r.nodes);
    Program {
        nodes: r.nodes,
        output,
        extra_outputs,
        env: r.env,
    }
}

/// Whether the expression's chain ends in a layer written as a recurrent
/// op (`RNN`, `LSTM`, `GRU`), whose final states a `let` pattern may bind.
pub(super) fn ends_in_recurrent(e: &crate::ast::Expr) -> bool {
    let last = e
        .items
        .iter()
        .rev()
        .find(|i| !matches!(i, ChainItem::Assert(_)));
    match last {
        Some(ChainItem::Layer(l)) => {
            ops::lookup(&l.op.to_string()).is_some_and(|d| matches!(d.name, "RNN" | "LSTM" | "GRU"))
        }
        _ => false,
    }
}

trait IntoRange {
    fn into_range(self, end: proc_macro2::Span) -> SpanRange;
}

impl IntoRange for proc_macro2::Span {
    fn into_range(self, end: proc_macro2::Span) -> SpanRange {
        SpanRange { start: self, end }
    }
}

impl Resolver<'_> {
    pub(super) fn push(&mut self, kind: NodeKind, ident: String) -> Option<usize> {
        self.nodes.push(Node {
            kind,
            name: None,
            ident,
            branch: self.branch.clone(),
        });
        Some(self.nodes.len())
    }

    /// `let (y, h) = ..` / `let (y, (h, c)) = ..` over a chain ending in a
    /// recurrent layer (the chain made `value`): the output, then a node per
    /// bound final state; one value per name of the pattern, in order.
    pub(super) fn states(
        &mut self,
        value: Option<usize>,
        pattern: &crate::ast::Pattern,
        id: usize,
    ) -> Vec<Option<usize>> {
        use crate::ast::Pattern;
        let names = pattern.names();
        let cell = value
            .and_then(|v| self.nodes.get(v - 1))
            .and_then(|n| match &n.kind {
                NodeKind::Chain { items, .. } => items.iter().rev().find_map(|i| match i {
                    Item::Layer(l) => Some(l.op.as_ref().map(|op| match op {
                        Op::Rnn(r) => Some(r.cell),
                        _ => None,
                    })),
                    Item::Assert(_) => None,
                }),
                _ => None,
            });
        let Some(Some(Some(cell))) = cell else {
            // The layer failed to resolve (reported): bind the output only.
            let mut out = vec![None; names.len()];
            out[0] = value;
            return out;
        };
        let bad = |me: &Self| {
            // The user's names in the right pattern, when there are enough.
            let n: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let fix = match (cell.states(), n.as_slice()) {
                (2, [y, h, c, ..]) => format!("({y}, ({h}, {c}))"),
                (2, [y, h]) => format!("({y}, ({h}, _))"),
                (1, [y, h, ..]) => format!("({y}, {h})"),
                _ => cell.pattern().to_string(),
            };
            me.cx.error(
                pattern.span(),
                format!(
                    "`{}` gives its output and {}, bound as `let {} = ..`, but the pattern is `{}`\n\
                     help: write `let {fix} = ..`",
                    cell.name(),
                    if cell.states() == 2 {
                        "its final states `(h, c)`"
                    } else {
                        "its final state `h`"
                    },
                    cell.pattern(),
                    pattern.text()
                ),
            );
            vec![None; names.len()]
        };
        let Pattern::Tuple(items, _) = pattern else {
            return bad(self);
        };
        let [y, st] = items.as_slice() else {
            return bad(self);
        };
        let Pattern::Name(_) = y else {
            return bad(self);
        };
        let mut out = vec![value];
        let state = |me: &mut Self, index: usize, name: &Ident| -> Option<usize> {
            if name == "_" {
                return None;
            }
            me.push(
                NodeKind::Output {
                    src: value,
                    index: index + 1,
                },
                format!("__s{id}_{index}"),
            )
        };
        match (cell.states(), st) {
            (_, Pattern::Name(n)) if n == "_" => out.push(None),
            (1, Pattern::Name(h)) => out.push(state(self, 0, h)),
            (2, Pattern::Tuple(hc, _)) => match hc.as_slice() {
                [Pattern::Name(h), Pattern::Name(c)] => {
                    out.push(state(self, 0, h));
                    out.push(state(self, 1, c));
                }
                _ => return bad(self),
            },
            _ => return bad(self),
        }
        out
    }

    /// The pieces of `chunk`/`split`, one node each.
    pub(super) fn split(&mut self, e: &crate::ast::Expr, names: &[Ident]) -> Vec<Option<usize>> {
        let crate::ast::Head::Split {
            src,
            how,
            dim,
            span,
        } = &e.head
        else {
            return vec![None; names.len()];
        };
        let input = self.expr(src);
        let count = names.len();
        let Some(kind) = ops::merge::read_split(self.cx, &self.env, how, *dim, *span, count) else {
            return vec![None; count];
        };
        // One node gives every piece: its value is the first, an `Output`
        // node each further one.
        let first = self.push(
            NodeKind::Merge {
                kind,
                inputs: vec![(input, src.span)],
                span: *span,
            },
            format!("__p{}_0", e.id),
        );
        std::iter::once(first)
            .chain((1..count).map(|index| {
                self.push(
                    NodeKind::Output { src: first, index },
                    format!("__p{}_{index}", e.id),
                )
            }))
            .collect()
    }

    /// The value an expression makes.
    pub(super) fn expr(&mut self, e: &crate::ast::Expr) -> Option<usize> {
        use crate::ast::Head;
        let merge = format!("__m{}", e.id);
        let head = match &e.head {
            Head::Var(id) => self.var(id),
            Head::Paren(inner) => self.expr(inner),
            Head::Cat { args, dim, span } => {
                let inputs: Vec<(Option<usize>, SpanRange)> =
                    args.iter().map(|a| (self.expr(a), a.span)).collect();
                let kind = ops::merge::read_cat(self.cx, inputs.len(), *dim, *span);
                self.push(
                    NodeKind::Merge {
                        kind,
                        inputs,
                        span: *span,
                    },
                    merge,
                )
            }
            Head::Crop { src, to, span } => match to {
                CropTo::Like(like) => {
                    let inputs = vec![(self.expr(src), src.span), (self.expr(like), like.span)];
                    self.push(
                        NodeKind::Merge {
                            kind: MergeKind::Crop,
                            inputs,
                            span: *span,
                        },
                        merge,
                    )
                }
                CropTo::Size { size, offset } => {
                    let input = self.expr(src);
                    match ops::merge::read_crop_size(self.cx, &self.env, size, offset.as_deref()) {
                        Some(kind) => self.push(
                            NodeKind::Merge {
                                kind,
                                inputs: vec![(input, src.span)],
                                span: *span,
                            },
                            merge,
                        ),
                        None => None,
                    }
                }
            },
            Head::Split { span, .. } => {
                self.cx.error(
                    *span,
                    "a `chunk`/`split` gives several tensors: bind them with \
                     `let (a, b) = chunk(x, 2, dim = 1);`",
                );
                None
            }
            Head::If {
                id,
                cond,
                then,
                els,
                ..
            } => {
                let Some(taken) = eval_cond(self.cx, &self.env, cond) else {
                    // Undecided (a parameter with no value, in a block's body
                    // checked on its own, or a condition already reported):
                    // both branches are read, for their names and ops.
                    for (taken, e) in [(true, then), (false, els)] {
                        self.branch.push((*id, taken));
                        self.expr(e);
                        self.branch.pop();
                    }
                    return None;
                };
                self.branch.push((*id, taken));
                let value = self.expr(if taken { then } else { els });
                self.branch.pop();
                self.push(
                    NodeKind::Select {
                        id: *id,
                        taken,
                        value,
                    },
                    format!("__s{id}"),
                )
            }
            Head::Binary { op, lhs, rhs, span } => {
                let inputs = vec![(self.expr(lhs), lhs.span), (self.expr(rhs), rhs.span)];
                self.push(
                    NodeKind::Merge {
                        kind: MergeKind::Binary(*op),
                        inputs,
                        span: *span,
                    },
                    merge,
                )
            }
        };
        if e.items.is_empty() {
            return head;
        }
        let mut out = Vec::new();
        let scope = Scope {
            env: &self.env,
            ..self.scope
        };
        flatten(
            self.cx,
            scope,
            &e.items,
            &[],
            false,
            &mut out,
            &mut self.seen,
        );
        // A tensor named in a layer's arguments counts as used even where
        // the layer does not resolve (its error is reported already, or its
        // block's body is checked alone with unknown parameters).
        let names = &mut self.names;
        crate::ast::visit_item_layers(&e.items, &mut |l| {
            if let Some(Ok(args)) = &l.args {
                for arg in args {
                    arg.value.visit_idents(&mut |i| {
                        let name = i.to_string();
                        if let Some(entry) = names.iter_mut().find(|(n, ..)| *n == name) {
                            entry.3 = true;
                        }
                    });
                }
            }
        });
        // Tensor arguments (a block use's further inputs, a recurrent
        // layer's initial states) name tensors bound before.
        for item in &mut out {
            if let Item::Layer(layer) = item {
                if let Some(op) = &mut layer.op {
                    for (name, value) in op.tensor_args_mut() {
                        *value = self.var(name);
                    }
                }
            }
        }
        self.push(
            NodeKind::Chain {
                input: head,
                items: out,
            },
            format!("__t{}", e.id),
        )
    }

    pub(super) fn var(&mut self, id: &Ident) -> Option<usize> {
        if id == self.input {
            return Some(0);
        }
        let name = id.to_string();
        if let Some(entry) = self.names.iter_mut().find(|(n, ..)| *n == name) {
            entry.3 = true;
            return entry.1;
        }
        let known: Vec<String> = std::iter::once(self.input.to_string())
            .chain(self.names.iter().map(|(n, ..)| n.clone()))
            .collect();
        let hint = match did_you_mean(&name, known.iter().map(String::as_str)) {
            Some(s) => format!("\nhelp: did you mean `{s}`?"),
            None => format!(
                "\nhelp: the tensors bound here are {}",
                known
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let what = if self.env.contains_key(&name) {
            format!("`{name}` is a number here, not a tensor")
        } else {
            format!(
                "unknown tensor `{name}`: not the {}'s input nor bound by an earlier `let`",
                self.scope.owner
            )
        };
        self.cx
            .error(SpanRange::single(id.span()), format!("{what}{hint}"));
        None
    }
}
