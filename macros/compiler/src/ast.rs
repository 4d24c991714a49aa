//! The syntax tree of a `network!` invocation. Every node keeps the span of
//! the tokens it came from, so any later pass can point an error at them.

use proc_macro2::{Ident, Span};
use syn::{Attribute, Visibility};

use crate::diag::SpanRange;

/// Everything inside one `network! { .. }`.
pub struct Spec {
    pub networks: Vec<Network>,
}

/// `/// docs  pub Name(x: [B, 1, 28, 28]) -> [B, 10] { body }`
pub struct Network {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    pub input: Ident,
    pub input_shape: ShapeLit,
    pub output_shape: Option<ShapeLit>,
    /// `None` when the body failed to parse (its error is already reported).
    pub body: Option<Body>,
}

/// `[B, 16, 5, 5]`
#[derive(Clone)]
pub struct ShapeLit {
    pub dims: Vec<DimLit>,
    pub span: SpanRange,
}

#[derive(Clone)]
pub enum DimLit {
    /// A number.
    Lit(u64, Span),
    /// A symbol: any size, named.
    Sym(Ident),
    /// `_`: any size (assertions only).
    Wild(Span),
}

/// `let a = expr; .. expr`: named intermediate tensors, then the output.
pub struct Body {
    pub lets: Vec<Let>,
    pub output: Expr,
}

/// `let name = expr;`
pub struct Let {
    pub name: Ident,
    pub expr: Expr,
}

/// A tensor expression: a head, then a chain of layers and assertions
/// (`d4 -> max_pool(2) -> conv: Conv2d(..)`, `cat(a, b, dim = 1) -> relu`).
pub struct Expr {
    pub head: Head,
    pub items: Vec<ChainItem>,
    pub span: SpanRange,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
        }
    }
}

pub enum Head {
    /// The input or a `let` name.
    Var(Ident),
    /// `cat(a, b, .., dim = 1)`
    Cat {
        args: Vec<Expr>,
        dim: Option<(i64, SpanRange)>,
        span: SpanRange,
    },
    /// `crop(a, like = b)`: `a` centre-cropped to `b`'s height and width.
    Crop {
        src: Box<Expr>,
        like: Box<Expr>,
        span: SpanRange,
    },
    /// `a + b`, `a - b`, `a * b` (PyTorch broadcasting).
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        span: SpanRange,
    },
    /// `(expr)`
    Paren(Box<Expr>),
}

pub enum ChainItem {
    Layer(Layer),
    /// `features: seq { Conv2d(..) -> relu -> .. }`: children numbered like
    /// `nn.Sequential`, every op counting (`features.0.weight`).
    Seq(Seq),
    /// `: [B, 16, 5, 5]`, checked against the shape inferred so far.
    Assert(ShapeLit),
}

pub struct Seq {
    pub name: Option<Ident>,
    /// The rest of a dotted name (`layer2.0.downsample`): `["0", "downsample"]`.
    pub name_rest: Vec<String>,
    /// The `seq` / `Sequential` keyword.
    pub keyword: Ident,
    pub items: Vec<ChainItem>,
    pub span: SpanRange,
}

/// `name: Op(args)` or `op` or `op(args)`.
pub struct Layer {
    pub name: Option<Ident>,
    /// The rest of a dotted name (`layer1.0.conv1`): `["0", "conv1"]`.
    pub name_rest: Vec<String>,
    pub op: Ident,
    /// `None` when written without parentheses; `Err` when the arguments did
    /// not parse (reported already).
    pub args: Option<Result<Vec<Arg>, ()>>,
    /// The whole layer, name to closing parenthesis.
    pub span: SpanRange,
}

/// `value` or `key = value`.
pub struct Arg {
    pub key: Option<Ident>,
    pub value: Value,
    pub span: SpanRange,
}

#[derive(Clone)]
pub enum Value {
    Int(i64, SpanRange),
    Float(f64, SpanRange),
    Bool(bool, SpanRange),
    Ident(Ident),
    Tuple(Vec<Value>, SpanRange),
    /// `in -> out`
    Arrow(Box<Value>, Box<Value>, SpanRange),
}

impl Value {
    pub fn span(&self) -> SpanRange {
        match self {
            Value::Int(_, s) | Value::Float(_, s) | Value::Bool(_, s) => *s,
            Value::Ident(i) => SpanRange::single(i.span()),
            Value::Tuple(_, s) | Value::Arrow(_, _, s) => *s,
        }
    }

    /// How the value reads in a message.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(..) => "an integer",
            Value::Float(..) => "a float",
            Value::Bool(..) => "a boolean",
            Value::Ident(..) => "a name",
            Value::Tuple(..) => "a tuple",
            Value::Arrow(..) => "an `in -> out` pair",
        }
    }
}
