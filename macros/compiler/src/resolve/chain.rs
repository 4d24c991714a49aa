//! Chains: their layers named and numbered as PyTorch's module paths
//! (`features.3`, `layer1.0.conv1`), `seq` and `repeat` expanded, names
//! checked for uniqueness.

use std::collections::HashMap;

use proc_macro2::Ident;

use super::layer::resolve_layer;
use super::{eval_cond, subst, Item, Node, NodeKind, ResolvedLayer, Scope};
use crate::ast::{ChainItem, RepeatBody, Value};
use crate::diag::{Ctxt, SpanRange};

/// Numbers the unnamed layers of a body that share a label, in source
/// order (nodes are made in source order).
pub(super) fn number_unnamed(nodes: &mut [Node]) {
    let mut count: HashMap<String, usize> = HashMap::new();
    let unnamed = |nodes: &mut [Node], f: &mut dyn FnMut(&mut ResolvedLayer)| {
        for node in nodes.iter_mut() {
            if let NodeKind::Chain { items, .. } = &mut node.kind {
                for item in items.iter_mut() {
                    if let Item::Layer(l) = item {
                        if l.path.is_empty() {
                            f(l);
                        }
                    }
                }
            }
        }
    };
    unnamed(nodes, &mut |l| {
        *count.entry(l.label.clone()).or_default() += 1
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    unnamed(nodes, &mut |l| {
        if count.get(&l.label).copied().unwrap_or(0) > 1 {
            let n = seen.entry(l.label.clone()).or_default();
            *n += 1;
            l.nth = Some(*n);
        }
    });
}

/// Resolves a chain's items in order, giving each layer its module path:
/// its name, or inside a `seq` its index there (every op counts, as in
/// `nn.Sequential`).
#[allow(clippy::too_many_arguments)]
pub(super) fn flatten(
    cx: &Ctxt,
    scope: Scope,
    items: &[ChainItem],
    prefix: &[String],
    in_seq: bool,
    out: &mut Vec<Item>,
    seen: &mut HashMap<String, SpanRange>,
) {
    walk_items(cx, scope, items, prefix, in_seq, 0, out, seen)
}

/// A `seq`'s items numbered from `start`.
pub(super) fn flatten_from(
    cx: &Ctxt,
    scope: Scope,
    items: &[ChainItem],
    prefix: &[String],
    start: usize,
    out: &mut Vec<Item>,
    seen: &mut HashMap<String, SpanRange>,
) {
    walk_items(cx, scope, items, prefix, true, start, out, seen)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn walk_items(
    cx: &Ctxt,
    scope: Scope,
    items: &[ChainItem],
    prefix: &[String],
    in_seq: bool,
    start: usize,
    out: &mut Vec<Item>,
    seen: &mut HashMap<String, SpanRange>,
) {
    let mut index = start;
    walk_items_at(cx, scope, items, prefix, in_seq, &mut index, out, seen)
}

/// A chain's items numbered from `*index`, which ends past the last.
#[allow(clippy::too_many_arguments)]
fn walk_items_at(
    cx: &Ctxt,
    scope: Scope,
    items: &[ChainItem],
    prefix: &[String],
    in_seq: bool,
    index: &mut usize,
    out: &mut Vec<Item>,
    seen: &mut HashMap<String, SpanRange>,
) {
    for item in items {
        match item {
            ChainItem::Layer(layer) if layer.splice.is_some() => {
                splice(cx, scope, layer, prefix, in_seq, index, out, seen);
            }
            ChainItem::If(c) => match eval_cond(cx, scope.env, &c.cond) {
                // Decided: the branch's layers are the chain's, numbered on.
                Some(taken) => {
                    let branch = if taken { &c.then } else { &c.els };
                    walk_items_at(cx, scope, branch, prefix, in_seq, index, out, seen);
                }
                // Undecided (a block's body checked on its own, where its
                // parameters have no values) or a condition already
                // reported: both branches are read for their ops and names,
                // and the shapes after it are not inferred.
                None => {
                    let (mut i, mut s) = (*index, seen.clone());
                    let mut scratch = Vec::new();
                    walk_items_at(
                        cx,
                        scope,
                        &c.then,
                        prefix,
                        in_seq,
                        &mut i,
                        &mut scratch,
                        &mut s,
                    );
                    let (mut i, mut s) = (*index, seen.clone());
                    walk_items_at(
                        cx,
                        scope,
                        &c.els,
                        prefix,
                        in_seq,
                        &mut i,
                        &mut scratch,
                        &mut s,
                    );
                    out.push(unresolved("if", c.span));
                }
            },
            ChainItem::Assert(s) => out.push(Item::Assert(s.clone())),
            ChainItem::Layer(layer) => {
                let name_span = layer
                    .name
                    .as_ref()
                    .map_or(layer.span, |n| SpanRange::single(n.span()));
                let path = own_path(
                    cx,
                    layer.name.as_ref(),
                    &layer.name_rest,
                    name_span,
                    prefix,
                    in_seq,
                    index,
                    seen,
                )
                .unwrap_or_default();
                out.push(Item::Layer(Box::new(resolve_layer(cx, scope, layer, path))));
            }
            ChainItem::Repeat(rep) => {
                let count = match subst(cx, scope.env, &rep.count) {
                    Some(Value::Int(n, _)) if n >= 1 => n as usize,
                    Some(other) => {
                        cx.error(
                            other.span(),
                            format!(
                                "`repeat` needs a count of at least 1, found {other}\nhelp: write `1`, \
                                 or remove the layer"
                            ),
                        );
                        out.push(unresolved("repeat", rep.span));
                        continue;
                    }
                    None => {
                        out.push(unresolved("repeat", rep.span));
                        continue;
                    }
                };
                let name_span = rep
                    .name
                    .as_ref()
                    .map_or(rep.span, |n| SpanRange::single(n.span()));
                // Named: the copies are `name.0`, `name.1`, ..; unnamed inside
                // a `seq`: they take the `seq`'s next indices.
                // Spliced: each copy's layers go on in this chain.
                if rep.splice {
                    for _ in 0..count {
                        match &rep.body {
                            RepeatBody::Layer(layer) => {
                                let path =
                                    own_path(cx, None, &[], rep.span, prefix, in_seq, index, seen)
                                        .unwrap_or_default();
                                out.push(Item::Layer(Box::new(resolve_layer(
                                    cx, scope, layer, path,
                                ))))
                            }
                            RepeatBody::Items(items) => {
                                walk_items_at(cx, scope, items, prefix, in_seq, index, out, seen)
                            }
                        }
                    }
                    continue;
                }
                let base = if rep.name.is_some() {
                    own_path(
                        cx,
                        rep.name.as_ref(),
                        &rep.name_rest,
                        name_span,
                        prefix,
                        in_seq,
                        index,
                        seen,
                    )
                } else if in_seq {
                    None
                } else {
                    let body = match &rep.body {
                        RepeatBody::Layer(l) => format!("{}(..)", l.op),
                        RepeatBody::Items(_) => "{ .. }".to_string(),
                    };
                    cx.error(
                        SpanRange::single(rep.keyword.span()),
                        format!(
                            "a `repeat` needs a name, which prefixes its copies' parameter names \
                             (`layers.0.weight`)\nhelp: write `layers: repeat {} {body}`",
                            rep.count
                        ),
                    );
                    Some(vec!["repeat".to_string()])
                };
                let mut inner = 0usize;
                for _ in 0..count {
                    let path = match &base {
                        Some(b) => own_path(cx, None, &[], rep.span, b, true, &mut inner, seen),
                        None => own_path(cx, None, &[], rep.span, prefix, true, index, seen),
                    }
                    .unwrap_or_default();
                    match &rep.body {
                        RepeatBody::Layer(layer) => {
                            out.push(Item::Layer(Box::new(resolve_layer(cx, scope, layer, path))))
                        }
                        RepeatBody::Items(items) => {
                            flatten(cx, scope, items, &path, true, out, seen)
                        }
                    }
                }
            }
            ChainItem::Seq(seq) => {
                let name_span = seq
                    .name
                    .as_ref()
                    .map_or(seq.span, |n| SpanRange::single(n.span()));
                match own_path(
                    cx,
                    seq.name.as_ref(),
                    &seq.name_rest,
                    name_span,
                    prefix,
                    in_seq,
                    index,
                    seen,
                ) {
                    Some(path) => flatten(cx, scope, &seq.items, &path, true, out, seen),
                    // A block whose body is an unnamed `seq` is an
                    // `nn.Sequential`: its children are `0`, `1`, ..
                    None if scope.owner == "block" && prefix.is_empty() && !in_seq => {
                        // Numbering goes on from the block's earlier numbered children.
                        let start = seen
                            .keys()
                            .filter_map(|k| k.parse::<usize>().ok())
                            .max()
                            .map_or(0, |m| m + 1);
                        flatten_from(cx, scope, &seq.items, &[], start, out, seen)
                    }
                    None => {
                        cx.error(
                            SpanRange::single(seq.keyword.span()),
                            format!(
                                "a `{}` needs a name, which prefixes its children's parameter names \
                                 (`features.0.weight`)\nhelp: write `features: {} {{ .. }}`",
                                seq.keyword, seq.keyword
                            ),
                        );
                        flatten(cx, scope, &seq.items, &["seq".to_string()], true, out, seen);
                    }
                }
            }
        }
    }
}

/// A place in a chain whose layers are not known (an undecided `if`, a
/// splice that failed): the shapes after it are not inferred.
fn unresolved(label: &str, span: SpanRange) -> Item {
    Item::Layer(Box::new(ResolvedLayer {
        name: None,
        path: Vec::new(),
        label: label.to_string(),
        op: None,
        span,
        nth: None,
        meant: None,
    }))
}

/// `..Block(args)`: the block's body, one chain from its input, walked
/// here with the block's parameters bound to the arguments, so that its
/// layers take this chain's places (in a `seq`, its next indices) with no
/// name level of their own.
#[allow(clippy::too_many_arguments)]
fn splice(
    cx: &Ctxt,
    scope: Scope,
    layer: &crate::ast::Layer,
    prefix: &[String],
    in_seq: bool,
    index: &mut usize,
    out: &mut Vec<Item>,
    seen: &mut HashMap<String, SpanRange>,
) {
    use crate::ast::{DimLit, Head};
    let written = layer.op.to_string();
    let Some(d) = scope.blocks.iter().position(|b| b.name == written) else {
        cx.error(
            SpanRange::single(layer.op.span()),
            format!("only a block can be spliced, and `{written}` is not one\nhelp: remove `..`"),
        );
        out.push(unresolved(&written, layer.span));
        return;
    };
    let def = &scope.blocks[d];
    // A block that splices itself, directly or through others, would
    // never end.
    let cycle = SPLICING.with(|s| s.borrow().contains(&d));
    if cycle {
        cx.error(
            layer.span,
            format!(
                "`{written}` is spliced into itself (directly or through other blocks), which never ends\n\
                 help: remove `..{written}` from its own body"
            ),
        );
        out.push(unresolved(&written, layer.span));
        return;
    }
    let args: Option<Vec<crate::ast::Arg>> = match &layer.args {
        None => Some(Vec::new()),
        Some(Err(())) => None,
        Some(Ok(args)) => super::layer::subst_args(cx, scope.env, args),
    };
    let bound = args.and_then(|args| {
        let u = super::BlockUse {
            def: d,
            block: written.clone(),
            label: format!("..{written}"),
            args,
            span: layer.span,
            tensors: Vec::new(),
        };
        crate::block::bind_args(cx, def, &u)
    });
    let Some(bound) = bound else {
        out.push(unresolved(&written, layer.span));
        return;
    };
    let Some(body) = &def.body else {
        out.push(unresolved(&written, layer.span));
        return;
    };
    let one_chain = body.lets.is_empty()
        && body.extra_outputs.is_empty()
        && bound.tensors.is_empty()
        && matches!(&body.output.head, Head::Var(v) if *v == def.input);
    if !one_chain {
        cx.error(
            layer.span,
            format!(
                "`{written}` cannot be spliced: its body is not one chain from its input \
                 (`{} -> ..`, no `let`, merge or further tensor)\nhelp: remove `..`, and give the \
                 use a name: `stage: {written}(..)`",
                def.input
            ),
        );
        out.push(unresolved(&written, layer.span));
        return;
    }
    // Its layers are resolved before the shapes are known: they may use
    // the block's parameters, not the sizes of its input.
    let sizes: Vec<String> = def
        .input_shape
        .dims
        .iter()
        .filter_map(|d| match d {
            DimLit::Sym(s) if !bound.env.contains_key(&s.to_string()) => Some(s.to_string()),
            _ => None,
        })
        .collect();
    let mut size_used = None;
    let mut note = |i: &Ident| {
        if size_used.is_none() && sizes.contains(&i.to_string()) {
            size_used = Some(i.clone());
        }
    };
    crate::ast::visit_layers(&body.output, &mut |l| {
        for arg in l.args.iter().flatten().flatten() {
            arg.value.visit_idents(&mut note);
        }
    });
    // The conditions of its `if`s and its `repeat` counts too.
    fn conds(items: &[ChainItem], f: &mut impl FnMut(&Ident)) {
        fn cond(c: &crate::ast::Cond, f: &mut impl FnMut(&Ident)) {
            use crate::ast::Cond;
            match c {
                Cond::Cmp(_, a, b) => {
                    a.visit_idents(f);
                    b.visit_idents(f);
                }
                Cond::And(a, b) | Cond::Or(a, b) => {
                    cond(a, f);
                    cond(b, f);
                }
                Cond::Not(c) => cond(c, f),
                Cond::Bool(..) => {}
            }
        }
        for item in items {
            match item {
                ChainItem::If(c) => {
                    cond(&c.cond, f);
                    conds(&c.then, f);
                    conds(&c.els, f);
                }
                ChainItem::Seq(s) => conds(&s.items, f),
                ChainItem::Repeat(r) => {
                    r.count.visit_idents(f);
                    if let RepeatBody::Items(i) = &r.body {
                        conds(i, f);
                    }
                }
                ChainItem::Layer(_) | ChainItem::Assert(_) => {}
            }
        }
    }
    conds(&body.output.items, &mut note);
    if let Some(size) = size_used {
        cx.error(
            SpanRange::single(size.span()),
            format!(
                "`{written}` is spliced, so its layers are read before its input's shape is known: \
                 `{size}` is a size of its input `{}` {}\nhelp: remove `..` (a use of its own reads \
                 the input), or make `{size}` a parameter of `{written}`",
                def.input,
                crate::declared::shape_text(&def.input_shape)
            ),
        );
        out.push(unresolved(&written, layer.span));
        return;
    }
    let inner = Scope {
        env: &bound.env,
        blocks: scope.blocks,
        owner: "block",
    };
    let start = out.len();
    SPLICING.with(|s| s.borrow_mut().push(d));
    walk_items_at(
        cx,
        inner,
        &body.output.items,
        prefix,
        in_seq,
        index,
        out,
        seen,
    );
    SPLICING.with(|s| s.borrow_mut().pop());
    // Assertions in the body, in the caller's terms: the parameters put in,
    // the input's sizes (not known here) left free.
    for item in &mut out[start..] {
        if let Item::Assert(s) = item {
            *s = assertion_in(s, &bound.env);
        }
    }
}

thread_local! {
    /// The blocks being spliced, innermost last (a splice of one of them
    /// again is a cycle).
    static SPLICING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A spliced block's assertion with its parameters' values put in; a dim
/// that names anything else (a size of the block's input) becomes `_`.
fn assertion_in(s: &crate::ast::ShapeLit, env: &super::Env) -> crate::ast::ShapeLit {
    use crate::ast::DimLit;
    let dims = s
        .dims
        .iter()
        .map(|d| {
            let scratch = Ctxt::new();
            let value = crate::declared::eval_dim(&scratch, d, env);
            match (d, value) {
                (DimLit::Lit(..) | DimLit::Wild(_), _) => d.clone(),
                (_, Some(crate::shape::Dim::Known(n))) if scratch.error_count() == 0 => {
                    DimLit::Lit(n, s.span.start)
                }
                _ => DimLit::Wild(s.span.start),
            }
        })
        .collect();
    crate::ast::ShapeLit { dims, ..s.clone() }
}

/// The module path of the next item of a chain, registered as taken.
#[allow(clippy::too_many_arguments)]
pub(super) fn own_path(
    cx: &Ctxt,
    name: Option<&Ident>,
    name_rest: &[String],
    span: SpanRange,
    prefix: &[String],
    in_seq: bool,
    index: &mut usize,
    seen: &mut HashMap<String, SpanRange>,
) -> Option<Vec<String>> {
    let own = match name {
        Some(n) => n.to_string(),
        None if in_seq => index.to_string(),
        None => {
            *index += 1;
            return None;
        }
    };
    *index += 1;
    let mut path = prefix.to_vec();
    path.push(own.clone());
    path.extend(name_rest.iter().cloned());
    let own = path.last().cloned().unwrap_or(own);
    let key = path.join(".");
    // Each layer with parameters becomes a struct field named by its path
    // (`features.0` -> `features_0`): those must be unique too, and must not
    // be the fields every network has.
    let field = format!("#field:{}", path.join("_"));
    let reserved = ["fusion", "training", "rng", "cfg", "cff", "branches"];
    if prefix.is_empty() && reserved.contains(&own.as_str()) {
        cx.error(
            span,
            format!(
                "`{own}` is a name every generated network uses for its own state\n\
                 help: name this layer differently, e.g. `{own}_layer`"
            ),
        );
    } else if seen.contains_key(&key) {
        cx.error(
            span,
            format!(
                "duplicate layer name `{key}`: parameter names must be unique \
                 (`{key}.weight` would be ambiguous)\n\
                 help: rename this layer, e.g. `{own}_2`"
            ),
        );
    } else if let Some(other) = seen.get(&field).map(|s| s.start) {
        let _ = other;
        cx.error(
            span,
            format!(
                "`{key}` would be the struct field `{}`, which another layer already is\n\
                 help: rename this layer, e.g. `{key}b`",
                path.join("_")
            ),
        );
    } else {
        seen.insert(key, span);
        seen.insert(field, span);
    }
    Some(path)
}
