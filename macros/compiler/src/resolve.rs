//! Names and arguments: each layer's op is looked up, its arguments are
//! matched to the op's parameters (positional or by keyword), checked for
//! kind and range, and defaulted. Layer names are checked for uniqueness.

use std::collections::HashMap;
use std::fmt;

use proc_macro2::Ident;

use crate::ast::{
    Arg, ArithOp, BlockDef, Body, ChainItem, CmpOp, Cond, CropTo, DimLit, Layer, Network,
    RepeatBody, ShapeLit, Value,
};
use crate::diag::{did_you_mean, Ctxt, SpanRange};
use crate::ops;
pub use crate::ops::activation::Activation;
pub use crate::ops::args::WeightInit;
pub use crate::ops::attention::MultiHeadAttention;
pub use crate::ops::conv::{Conv2d, ConvTranspose2d, Padding};
pub use crate::ops::layer_norm::LayerNorm;
pub use crate::ops::linear::Linear;
pub use crate::ops::merge::{MergeKind, SplitSpec};
pub use crate::ops::norm::BatchNorm;
pub use crate::ops::pool::{Pool2d, PoolKind};
pub use crate::ops::resize::{Upsample, UpsampleSize};
pub use crate::ops::vit::PatchEmbed;
use crate::shape::Dim;

/// A value with the tokens it was written as (or the layer's, if defaulted).
#[derive(Clone, Copy, Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub span: SpanRange,
    /// Written by the user, not a default.
    pub written: bool,
}

/// A use of a reusable block: `down1: DoubleConv(64)`. Checked by
/// instantiating the block's body with these arguments and the input's shape.
#[derive(Clone)]
pub struct BlockUse {
    /// Index into the invocation's blocks.
    pub def: usize,
    pub block: String,
    /// Substituted (no free block parameters left).
    pub args: Vec<Arg>,
    /// `layer1.0: BasicBlock(64)`, for messages.
    pub label: String,
    pub span: SpanRange,
    /// The further tensor inputs, by name, and the values they name.
    pub tensors: Vec<(Ident, Option<usize>)>,
}

impl fmt::Debug for BlockUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

#[derive(Clone, Debug)]
pub enum Op {
    Block(Box<BlockUse>),
    Conv2d(Box<Conv2d>),
    Pool2d(Pool2d),
    Flatten {
        start: Spanned<i64>,
        end: Spanned<i64>,
    },
    Linear(Linear),
    Act(Activation),
    Softmax {
        dim: Spanned<i64>,
        log: bool,
    },
    AdaptivePool2d {
        kind: PoolKind,
        out: Spanned<(u64, u64)>,
    },
    ConvTranspose2d(Box<ConvTranspose2d>),
    Upsample(Upsample),
    PixelShuffle {
        r: Spanned<u64>,
    },
    BatchNorm(BatchNorm),
    /// Identity in inference; the mask is drawn in training.
    Dropout {
        p: f64,
    },
    Conv1d(Box<crate::ops::conv1d::Conv1d>),
    Pool1d(crate::ops::pool1d::Pool1d),
    AdaptivePool1d {
        kind: PoolKind,
        out: Spanned<u64>,
    },
    Transpose {
        d0: Spanned<i64>,
        d1: Spanned<i64>,
    },
    Embedding(crate::ops::embedding::Embedding),
    Filter(Box<crate::ops::filter::Filter>),
    LayerNorm(LayerNorm),
    MultiHeadAttention(MultiHeadAttention),
    PatchEmbed(PatchEmbed),
    ClassToken,
    PosEmbedding,
    SinusoidalEncoding,
    DropPath {
        p: f64,
    },
    Select {
        dim: Spanned<i64>,
        index: Spanned<i64>,
    },
    Rnn(Box<crate::ops::rnn::Rnn>),
    Reverse(crate::ops::reshape::Reverse),
}

impl Op {
    /// The tensors the op reads besides its input, by name, with the
    /// values they name once resolved: a block use's further inputs, a
    /// recurrent layer's initial states.
    pub fn tensor_args_mut(&mut self) -> &mut [(Ident, Option<usize>)] {
        match self {
            Op::Block(u) => &mut u.tensors,
            Op::Rnn(r) => &mut r.tensors,
            Op::MultiHeadAttention(m) => &mut m.tensors,
            Op::Reverse(r) => &mut r.lengths,
            _ => &mut [],
        }
    }

    pub fn has_params(&self) -> bool {
        matches!(
            self,
            Op::Conv2d(_)
                | Op::Linear(_)
                | Op::BatchNorm(_)
                | Op::ConvTranspose2d(_)
                | Op::Block(_)
                | Op::Conv1d(_)
                | Op::Embedding(_)
                | Op::MultiHeadAttention(_)
                | Op::PatchEmbed(_)
                | Op::ClassToken
                | Op::PosEmbedding
                | Op::Rnn(_)
        ) || matches!(self, Op::LayerNorm(l) if l.has_params())
    }
}

/// A chain item after resolution.
pub enum Item {
    Layer(Box<ResolvedLayer>),
    Assert(ShapeLit),
}

pub struct ResolvedLayer {
    pub name: Option<Ident>,
    /// The module path that prefixes its parameter names: `["conv1"]`,
    /// `["features", "0"]`; empty for an unnamed layer outside a `seq`.
    pub path: Vec<String>,
    /// How the layer is called in messages and the summary: its name, or
    /// the op as written (`max_pool(2)`).
    pub label: String,
    /// `None` when the op or its arguments were wrong (already reported).
    pub op: Option<Op>,
    pub span: SpanRange,
    /// For an unnamed layer written the same way as another in the body
    /// (three `max_pool(2)`): which one it is, from 1 in source order.
    pub nth: Option<usize>,
}

impl ResolvedLayer {
    /// The label, numbered when several unnamed layers share it
    /// (`max_pool(2) #2`): what run-time messages and the summary call it,
    /// where no caret points at the tokens.
    pub fn positional(&self) -> String {
        match self.nth {
            Some(n) => format!("{} #{n}", self.label),
            None => self.label.clone(),
        }
    }
}

/// Numbers the unnamed layers of a body that share a label, in source
/// order (nodes are made in source order).
fn number_unnamed(nodes: &mut [Node]) {
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

/// A network's (or block instance's) dataflow graph: value 0 is the input,
/// node `i` makes value `i + 1`; nodes come in an order where every input
/// is made before use.
pub struct Program {
    pub nodes: Vec<Node>,
    /// The output value (`None` after an error).
    pub output: Option<usize>,
    /// A network's further outputs (its body ends in a tuple).
    pub extra_outputs: Vec<Option<usize>>,
    /// The names numbers are known by in the body: the scope's (block
    /// parameters, dims of the input) and the body's named values
    /// (`let hidden = C * t;`). Shapes in the body are read against it.
    pub env: Env,
}

pub struct Node {
    pub kind: NodeKind,
    /// The `let` name bound to this node's value, if any.
    pub name: Option<Ident>,
    /// The variable emitted code holds the value in: stable across the
    /// instances of a block (made from the expression's id, not the node's index).
    pub ident: String,
    /// The `if` branches this node is inside: `(if id, branch taken)`.
    pub branch: Vec<(usize, bool)>,
}

pub enum NodeKind {
    /// Layers applied in order to `input` (`None`: an unknown tensor,
    /// already reported).
    Chain {
        input: Option<usize>,
        items: Vec<Item>,
    },
    /// Several tensors into one.
    Merge {
        kind: MergeKind,
        /// Each input value and the tokens it was written as.
        inputs: Vec<(Option<usize>, SpanRange)>,
        span: SpanRange,
    },
    /// A block's further tensor input number `index` (1 for the first after
    /// the chain's tensor).
    Input { index: usize },
    /// Further output `index` (1 for the second) of the node making `src`,
    /// whose own value is output 0: a piece of a `chunk`/`split` (a
    /// `Merge`), or a final state of the layer ending a chain (1: `h`,
    /// 2: `c` of `let (y, (h, c)) = x -> lstm: LSTM(..)`).
    Output { src: Option<usize>, index: usize },
    /// The value of `if cond { a } else { b }`: the branch taken.
    Select {
        id: usize,
        taken: bool,
        value: Option<usize>,
    },
}

impl Program {
    /// The node that makes `value`, if it is not the input.
    pub fn node_of(&self, value: usize) -> Option<&Node> {
        value.checked_sub(1).and_then(|i| self.nodes.get(i))
    }
}

/// A compile-time value a name stands for: a block parameter, or a dim of
/// the input (`C`, `H`) once the use's input shape is known.
#[derive(Clone, Debug)]
pub enum EnvVal {
    Int(i64),
    Float(f64),
    Bool(bool),
    Dim(Dim),
    /// A named value whose definition was wrong (reported): its uses add
    /// no error of their own.
    Failed,
}

pub type Env = HashMap<String, EnvVal>;

/// What a body is resolved against: the names in scope and the blocks.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub env: &'a Env,
    pub blocks: &'a [BlockDef],
    /// "network" or "block": whose body this is, for messages.
    pub owner: &'static str,
}

struct Resolver<'a> {
    cx: &'a Ctxt,
    scope: Scope<'a>,
    /// The scope's names and the body's named values so far.
    env: Env,
    input: &'a Ident,
    nodes: Vec<Node>,
    /// `let` names: value, the name, whether it is used.
    names: Vec<(String, Option<usize>, Ident, bool)>,
    seen: HashMap<String, SpanRange>,
    branch: Vec<(usize, bool)>,
}

/// The symbols of an input shape, each standing for itself.
pub fn input_env(shape: &ShapeLit) -> Env {
    shape
        .dims
        .iter()
        .filter_map(|d| match d {
            DimLit::Sym(s) => Some((s.to_string(), EnvVal::Dim(Dim::sym(s.to_string())))),
            _ => None,
        })
        .collect()
}

pub fn resolve(cx: &Ctxt, net: &Network, blocks: &[BlockDef], env: &Env) -> Program {
    let scope = Scope {
        env,
        blocks,
        owner: "network",
    };
    let extra: Vec<Ident> = net.extra.iter().map(|i| i.name.clone()).collect();
    resolve_body(cx, scope, &net.input, &extra, net.body.as_ref())
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
                    format!("`{name}` is already bound\nhelp: give this tensor another name"),
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
fn ends_in_recurrent(e: &crate::ast::Expr) -> bool {
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
    /// Whether `v`, which reads both as a number and as tensor arithmetic
    /// (`let y = x;`, `let s = a + b;`), names only numbers.
    fn names_a_value(&self, v: &Value) -> bool {
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
    fn value_let(&mut self, name: &Ident, v: &Value) {
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
                format!("`{text}` is already bound, as {what}\nhelp: give this value another name"),
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

    fn push(&mut self, kind: NodeKind, ident: String) -> Option<usize> {
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
    fn states(
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
    fn split(&mut self, e: &crate::ast::Expr, names: &[Ident]) -> Vec<Option<usize>> {
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
    fn expr(&mut self, e: &crate::ast::Expr) -> Option<usize> {
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
        for item in &e.items {
            if let crate::ast::ChainItem::Layer(l) = item {
                if let Some(Ok(args)) = &l.args {
                    for arg in args {
                        arg.value.visit_idents(&mut |i| {
                            let name = i.to_string();
                            if let Some(entry) = self.names.iter_mut().find(|(n, ..)| *n == name) {
                                entry.3 = true;
                            }
                        });
                    }
                }
            }
        }
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

    fn var(&mut self, id: &Ident) -> Option<usize> {
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

/// Resolves a chain's items in order, giving each layer its module path:
/// its name, or inside a `seq` its index there (every op counts, as in
/// `nn.Sequential`).
#[allow(clippy::too_many_arguments)]
fn flatten(
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
fn flatten_from(
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
fn walk_items(
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
    for item in items {
        match item {
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
                    &mut index,
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
                            format!("`repeat` needs a count of at least 1, found {other}"),
                        );
                        0
                    }
                    None => 0,
                };
                let name_span = rep
                    .name
                    .as_ref()
                    .map_or(rep.span, |n| SpanRange::single(n.span()));
                // Named: the copies are `name.0`, `name.1`, ..; unnamed inside
                // a `seq`: they take the `seq`'s next indices.
                let base = if rep.name.is_some() {
                    own_path(
                        cx,
                        rep.name.as_ref(),
                        &rep.name_rest,
                        name_span,
                        prefix,
                        in_seq,
                        &mut index,
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
                        None => own_path(cx, None, &[], rep.span, prefix, true, &mut index, seen),
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
                    &mut index,
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

/// The module path of the next item of a chain, registered as taken.
#[allow(clippy::too_many_arguments)]
fn own_path(
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
                 help: rename one of them",
                path.join("_")
            ),
        );
    } else {
        seen.insert(key, span);
        seen.insert(field, span);
    }
    Some(path)
}

fn resolve_layer(cx: &Ctxt, scope: Scope, layer: &Layer, path: Vec<String>) -> ResolvedLayer {
    // Block parameters and known dims put into the arguments.
    let args: Option<Result<Vec<Arg>, ()>> = layer.args.as_ref().map(|a| match a {
        Err(()) => Err(()),
        Ok(args) => args
            .iter()
            .map(|arg| {
                subst(cx, scope.env, &arg.value).map(|value| Arg {
                    key: arg.key.clone(),
                    value,
                    span: arg.span,
                })
            })
            .collect::<Option<Vec<Arg>>>()
            .ok_or(()),
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
    }
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
