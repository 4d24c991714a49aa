//! One layer: its op looked up (or a block use bound), its arguments
//! matched to the op's schema and read into the op's typed parameters.

use super::{subst, BlockUse, EnvVal, Op, ResolvedLayer, Scope};
use crate::ast::{Arg, Layer};
use crate::diag::{did_you_mean, Ctxt, SpanRange};
use crate::ops;

pub(super) fn resolve_layer(
    cx: &Ctxt,
    scope: Scope,
    layer: &Layer,
    path: Vec<String>,
) -> ResolvedLayer {
    // Block parameters and known dims put into the arguments.
    let args: Option<Result<Vec<Arg>, ()>> = layer.args.as_ref().map(|a| match a {
        Err(()) => Err(()),
        Ok(args) => subst_args(cx, scope.env, args).ok_or(()),
    });
    let label = match (&path, &args) {
        (p, _) if !p.is_empty() => p.join("."),
        (_, Some(Ok(args))) => format!("{}({})", layer.op, fmt_args(args)),
        (_, _) => layer.op.to_string(),
    };
    let written = layer.op.to_string();
    let canonical = ops::lookup(&written);
    let block = scope.blocks.iter().position(|b| b.name == written);
    let op = match (canonical, block) {
        (None, Some(def)) => match &args {
            Some(Err(())) => None,
            args => {
                let args = match args {
                    Some(Ok(a)) => a.clone(),
                    _ => Vec::new(),
                };
                let call = match &layer.args {
                    None => written.clone(),
                    Some(_) => format!("{written}({})", fmt_args(&args)),
                };
                let mut u = BlockUse {
                    def,
                    block: written.clone(),
                    label: format!("{label}: {call}"),
                    args,
                    span: layer.span,
                    tensors: Vec::new(),
                };
                // Arguments are checked here too, so a mistake in them is
                // reported even where the use's input is unknown.
                crate::block::bind_args(cx, &scope.blocks[def], &u).map(|bound| {
                    u.tensors = bound.tensors.into_iter().map(|t| (t, None)).collect();
                    Op::Block(Box::new(u))
                })
            }
        },
        (None, None) => {
            let block_names: Vec<String> =
                scope.blocks.iter().map(|b| b.name.to_string()).collect();
            let all = ops::OPS
                .iter()
                .flat_map(|d| d.spellings.iter().copied())
                .chain(block_names.iter().map(String::as_str));
            let written_args = match &args {
                Some(Ok(a)) => fmt_args(a),
                _ => String::new(),
            };
            let meaning = ops::by_meaning(&written, &written_args);
            // A spelling that differs only in case or underscores wins
            // (`maxpool` is `max_pool`); then another framework's name.
            let key = |s: &str| s.to_lowercase().replace('_', "");
            let spelled = did_you_mean(&written, all);
            let close = spelled
                .as_ref()
                .filter(|s| key(s) == key(&written))
                .is_some();
            let hint = match (meaning, spelled) {
                (_, Some(s)) if close => format!("\nhelp: did you mean `{s}`?"),
                (Some(m), _) => format!("\nhelp: {m}"),
                (None, Some(s)) => format!("\nhelp: did you mean `{s}`?"),
                (None, None) => format!(
                    "\nhelp: the ops are {} (each also in snake_case: `max_pool`, `relu`, ..){}",
                    ops::OPS
                        .iter()
                        .map(|d| format!("`{}`", d.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if scope.blocks.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; the blocks are {}",
                            scope
                                .blocks
                                .iter()
                                .map(|b| format!("`{}`", b.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            };
            cx.error(
                SpanRange::single(layer.op.span()),
                if scope.blocks.is_empty() {
                    format!("unknown op `{written}`{hint}")
                } else {
                    format!("unknown op or block `{written}`{hint}")
                },
            );
            None
        }
        (Some(canonical), _) => match &args {
            Some(Err(())) => None,
            args => {
                let args: &[Arg] = match args {
                    Some(Ok(a)) => a,
                    _ => &[],
                };
                let before = cx.error_count();
                // The names that stand for numbers here (not sizes the
                // input decides).
                let mut known: Vec<String> = scope
                    .env
                    .iter()
                    .filter(|(_, v)| match v {
                        EnvVal::Dim(d) => d.known().is_some(),
                        _ => true,
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                known.sort();
                let op = ops::resolve(cx, canonical, layer, args, known);
                op.filter(|_| cx.error_count() == before)
            }
        },
    };
    if let Some(op) = &op {
        if op.has_params() && path.is_empty() {
            let message = if matches!(op, Op::Block(_)) {
                format!(
                    "a use of block `{written}` needs a name: it becomes the field that holds \
                     the use and prefixes its parameters (`layer1.conv.weight`)\n\
                     help: write `layer1: {written}(..)`"
                )
            } else {
                format!(
                    "`{written}` has parameters, so it needs a name, which becomes its \
                     parameter names (`conv1.weight`)\nhelp: write `conv1: {written}(..)`"
                )
            };
            cx.error(SpanRange::single(layer.op.span()), message);
        }
    }
    ResolvedLayer {
        name: layer.name.clone(),
        path,
        label,
        op,
        span: layer.span,
        nth: None,
        meant: canonical.map(|d| d.name),
    }
}

/// A layer's arguments with block parameters and known dims put in;
/// `None` after an error (reported).
pub(super) fn subst_args(cx: &Ctxt, env: &super::Env, args: &[Arg]) -> Option<Vec<Arg>> {
    args.iter()
        .map(|arg| {
            subst(cx, env, &arg.value).map(|value| Arg {
                key: arg.key.clone(),
                value,
                span: arg.span,
            })
        })
        .collect()
}

pub fn fmt_args(args: &[Arg]) -> String {
    args.iter()
        .map(|a| match &a.key {
            Some(k) => format!("{k} = {}", a.value),
            None => a.value.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
