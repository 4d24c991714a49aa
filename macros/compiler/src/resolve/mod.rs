//! Resolve: a body (a network's or a block's) becomes its dataflow graph
//! ([`Program`]), every layer's op looked up and its arguments read, every
//! name bound. This module holds what resolving makes (the graph's nodes,
//! the ops, the resolved layers, the names in scope); the work is split by
//! job:
//!
//! - `graph`: `let`s, tensor names, graph ops, `if` branches, one node each;
//! - `values`: named values and compile-time arithmetic ([`subst`],
//!   [`eval_cond`]);
//! - `chain`: a chain's layers named and numbered as PyTorch's module paths,
//!   `seq` and `repeat` expanded;
//! - `layer`: one layer's op and arguments (or a block use) read.

use std::collections::HashMap;
use std::fmt;

use proc_macro2::Ident;

use crate::ast::{Arg, BlockDef, DimLit, Network, ShapeLit};
use crate::diag::{Ctxt, SpanRange};
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

mod chain;
mod graph;
mod layer;
mod values;

pub use graph::resolve_body;
pub use layer::fmt_args;
pub use values::{eval_cond, subst};

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

    /// [`Op::tensor_args_mut`], to read.
    pub fn tensor_args(&self) -> &[(Ident, Option<usize>)] {
        match self {
            Op::Block(u) => &u.tensors,
            Op::Rnn(r) => &r.tensors,
            Op::MultiHeadAttention(m) => &m.tensors,
            Op::Reverse(r) => &r.lengths,
            _ => &[],
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
    /// The op written (its canonical name), also when the layer did not
    /// resolve. Lets inference go on after a wrong argument with what the
    /// op keeps. `None` for a misspelt op: a guess at it would report the
    /// guess's consequences (a rank, a dtype) as mistakes of their own.
    pub meant: Option<&'static str>,
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
