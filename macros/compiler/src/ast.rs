//! The syntax tree of a `network!` invocation. Every node keeps the span of
//! the tokens it came from, so any later pass can point an error at them.

use proc_macro2::{Ident, Span};
use syn::{Attribute, Visibility};

use crate::diag::SpanRange;

/// Everything inside one `network! { .. }`.
pub struct Spec {
    pub networks: Vec<Network>,
    /// Reusable blocks, instantiated where a network (or another block) uses them.
    pub blocks: Vec<BlockDef>,
}

/// `/// docs  pub block Name(x: [B, C, H, W], out: usize, stride: usize = 1) -> [B, out, H, W] { body }`
pub struct BlockDef {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub keyword: Span,
    pub name: Ident,
    pub input: Ident,
    pub input_shape: ShapeLit,
    pub params: Vec<BlockParam>,
    pub output_shape: Option<ShapeLit>,
    pub body: Option<Body>,
    /// The definition's own tokens, attributes included: what the macro a
    /// `pub block` emits hands to the invocations that import it.
    pub tokens: proc_macro2::TokenStream,
    /// Defined in another invocation and imported here (`use path::Name;`):
    /// checked where it was defined, so only its uses are checked here,
    /// and no macro is emitted for it again.
    pub imported: bool,
}

/// `out: usize`, `stride: usize = 1`, `p: f64 = 0.1`, `affine: bool = true`.
pub struct BlockParam {
    pub name: Ident,
    pub kind: ParamKind,
    pub kind_span: Span,
    pub default: Option<Value>,
    /// A further tensor input (`skip: [B, C, H, W]`): its shape.
    pub shape: Option<ShapeLit>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Usize,
    F64,
    Bool,
    /// A further tensor input, passed by name (`Up(d4, 512)`).
    Tensor,
}

impl ParamKind {
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Usize => "usize",
            ParamKind::F64 => "f64",
            ParamKind::Bool => "bool",
            ParamKind::Tensor => "tensor",
        }
    }
}

/// `/// docs  pub Name(x: [B, 1, 28, 28]) -> [B, 10] { body }`
pub struct Network {
    pub attrs: Vec<Attribute>,
    /// `#[netdsl(strict)]`: a window op that leaves input rows or columns
    /// out of every window is an error (PyTorch drops them silently).
    pub strict: bool,
    pub vis: Visibility,
    pub name: Ident,
    pub input: Ident,
    pub input_shape: ShapeLit,
    /// `ids: [B, T] u32`: the input holds integer token ids of that dtype
    /// (`u8`, `u32` or `i64`); `None`: floats.
    pub input_ids: Option<Ident>,
    /// Further inputs after the first (`lengths: [B]`, `h0: [2, B, 64]`):
    /// arguments of `forward` after it, bound like `let`s in the body.
    pub extra: Vec<NetInput>,
    pub output_shape: Option<ShapeLit>,
    /// `-> ([B, T, V], [2, B, H])`: the declared shapes of further outputs.
    pub extra_output_shapes: Vec<ShapeLit>,
    /// `None` when the body failed to parse (its error is already reported).
    pub body: Option<Body>,
}

/// A further input of a network: `h0: [2, B, 64]`, `lengths: [B] u32`.
pub struct NetInput {
    pub name: Ident,
    pub shape: ShapeLit,
    pub ids: Option<Ident>,
}

/// `[B, 16, 5, 5]`
#[derive(Clone)]
pub struct ShapeLit {
    pub dims: Vec<DimLit>,
    pub span: SpanRange,
}

impl ShapeLit {
    /// The symbols written as whole dims (`C` of `[B, C, H, W]`), in order.
    pub fn symbols(&self) -> Vec<String> {
        self.dims
            .iter()
            .filter_map(|d| match d {
                DimLit::Sym(s) => Some(s.to_string()),
                _ => None,
            })
            .collect()
    }
}

#[derive(Clone)]
pub enum DimLit {
    /// A number.
    Lit(u64, Span),
    /// A symbol: any size, named.
    Sym(Ident),
    /// `_`: any size (assertions only).
    Wild(Span),
    /// `H / 2`, `2 * C`, `H - 4`: arithmetic over numbers and symbols.
    Expr(Box<DimExpr>, SpanRange),
}

/// A dim written as arithmetic (`(H - 4) / 2`); `/` divides exactly.
#[derive(Clone)]
pub enum DimExpr {
    Num(u64, Span),
    Sym(Ident),
    Bin(ArithOp, Box<DimExpr>, Box<DimExpr>),
}

impl DimExpr {
    /// The first symbol the expression names, left to right.
    pub fn first_symbol(&self) -> Option<&Ident> {
        match self {
            DimExpr::Num(..) => None,
            DimExpr::Sym(s) => Some(s),
            DimExpr::Bin(_, a, b) => a.first_symbol().or_else(|| b.first_symbol()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

/// `let a = expr; .. expr`: named intermediate tensors, then the output.
pub struct Body {
    pub lets: Vec<Let>,
    pub output: Expr,
    /// A network's further outputs: the body ends in a tuple,
    /// `(logits, h, c)`; `output` is its first element.
    pub extra_outputs: Vec<Expr>,
}

/// `let name = expr;`, `let (a, b) = chunk(..);`, or a named value,
/// `let hidden = C * t;`.
pub struct Let {
    /// One name, or several for `chunk`/`split` and a recurrent layer's
    /// states, in the order written (a nested pattern flattened).
    pub names: Vec<Ident>,
    /// The pattern as written: `y`, `(a, b)`, `(y, (h, c))`.
    pub pattern: Pattern,
    /// The right-hand side read as a tensor expression; `None` when it reads
    /// only as a number (`let hidden = 4 * C;`).
    pub expr: Option<Expr>,
    /// The right-hand side read as a number, when it reads as one. `let y = x;`
    /// and `let s = a + b;` read both ways: what the names are decides.
    pub value: Option<Value>,
}

/// A `let` pattern: a name (`_` drops the value) or a tuple of patterns.
pub enum Pattern {
    Name(Ident),
    Tuple(Vec<Pattern>, SpanRange),
}

impl Pattern {
    /// The names in written order.
    pub fn names(&self) -> Vec<Ident> {
        match self {
            Pattern::Name(n) => vec![n.clone()],
            Pattern::Tuple(items, _) => items.iter().flat_map(Pattern::names).collect(),
        }
    }

    /// Whether a tuple holds a tuple.
    pub fn is_nested(&self) -> bool {
        match self {
            Pattern::Name(_) => false,
            Pattern::Tuple(items, _) => items.iter().any(|p| matches!(p, Pattern::Tuple(..))),
        }
    }

    pub fn span(&self) -> SpanRange {
        match self {
            Pattern::Name(n) => SpanRange::single(n.span()),
            Pattern::Tuple(_, s) => *s,
        }
    }

    /// As written: `(y, (h, c))`.
    pub fn text(&self) -> String {
        match self {
            Pattern::Name(n) => n.to_string(),
            Pattern::Tuple(items, _) => format!(
                "({})",
                items
                    .iter()
                    .map(Pattern::text)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A tensor expression: a head, then a chain of layers and assertions
/// (`d4 -> max_pool(2) -> conv: Conv2d(..)`, `cat(a, b, dim = 1) -> relu`).
pub struct Expr {
    /// Unique in the invocation: names the expression's values in emitted code,
    /// so they do not depend on which branches a block instance takes.
    pub id: usize,
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
    /// `crop(a, like = b)`: `a` centre-cropped to `b`'s height and width;
    /// `crop(a, size = (h, w))` centre-cropped to a size; with `top`/`left`,
    /// cropped at that offset.
    Crop {
        src: Box<Expr>,
        to: CropTo,
        span: SpanRange,
    },
    /// `chunk(x, 2, dim = 1)`, `split(x, [16, 48], dim = 1)`: several tensors,
    /// bound by `let (a, b) = ..`.
    Split {
        src: Box<Expr>,
        how: SplitHow,
        dim: Option<(i64, SpanRange)>,
        span: SpanRange,
    },
    /// `if cond { a } else { b }`: decided at compile time (in a block, per
    /// use); only the branch taken exists in that network or block instance.
    If {
        id: usize,
        cond: Cond,
        then: Box<Expr>,
        els: Box<Expr>,
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

pub enum CropTo {
    Like(Box<Expr>),
    Size {
        size: Box<(Value, Value)>,
        offset: Option<Box<(Value, Value)>>,
    },
}

pub enum SplitHow {
    /// `chunk(x, n)`: `n` pieces as `torch.chunk` (the last may be smaller).
    Chunk(Value),
    /// `split(x, size)`: pieces of `size`; `split(x, [a, b, ..])`: those sizes.
    Sizes(Vec<Value>, bool),
}

/// A compile-time condition: comparisons of numbers, `&&`, `||`, `!`.
#[derive(Clone)]
pub enum Cond {
    Cmp(CmpOp, Value, Value),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Bool(bool, SpanRange),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

pub enum ChainItem {
    Layer(Layer),
    /// `layers: repeat 3 { Conv2d(64, kernel = 3) -> relu }`: the chain
    /// repeated, each copy numbered (`layers.0.0.weight`, `layers.1.0.weight`);
    /// `repeat 2 BasicBlock(64)`: the layer or block repeated
    /// (`layer1.0`, `layer1.1`).
    Repeat(Repeat),
    /// `features: seq { Conv2d(..) -> relu -> .. }`: children numbered like
    /// `nn.Sequential`, every op counting (`features.0.weight`).
    Seq(Seq),
    /// `: [B, 16, 5, 5]`, checked against the shape inferred so far.
    Assert(ShapeLit),
    /// `if t != 1 { ConvBNReLU(hidden, kernel = 1) } -> ..`: layers that
    /// exist only when a condition on the block's parameters holds (or the
    /// `else` ones when it does not). Inside a `seq` they take its next
    /// indices, so the numbering after them shifts as `nn.Sequential`'s
    /// does when a layer is left out.
    If(ChainIf),
}

pub struct ChainIf {
    pub keyword: Span,
    pub cond: Cond,
    pub then: Vec<ChainItem>,
    /// Empty without an `else`.
    pub els: Vec<ChainItem>,
    pub span: SpanRange,
}

pub struct Repeat {
    pub name: Option<Ident>,
    pub name_rest: Vec<String>,
    pub keyword: Ident,
    pub count: Value,
    pub body: RepeatBody,
    pub span: SpanRange,
    /// `..repeat 2 { .. }`: the copies' layers take the enclosing `seq`'s
    /// next indices one by one, with no level per copy (as
    /// torchvision's `make_layers` lists them).
    pub splice: bool,
}

pub enum RepeatBody {
    Items(Vec<ChainItem>),
    Layer(Box<Layer>),
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
    /// `..Stage(64, convs = 2)`: a block use whose layers are spliced into
    /// the enclosing chain (numbered in its `seq`), with no name level of
    /// its own. The span of the `..`.
    pub splice: Option<Span>,
}

/// `value` or `key = value`.
#[derive(Clone)]
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
    /// `2 * out`, `C / 4`: arithmetic over block parameters and numbers.
    Arith(ArithOp, Box<Value>, Box<Value>, SpanRange),
}

impl Value {
    /// Calls `f` on every name the value mentions.
    pub fn visit_idents(&self, f: &mut impl FnMut(&Ident)) {
        match self {
            Value::Ident(i) => f(i),
            Value::Tuple(items, _) => items.iter().for_each(|v| v.visit_idents(f)),
            Value::Arrow(a, b, _) | Value::Arith(_, a, b, _) => {
                a.visit_idents(f);
                b.visit_idents(f);
            }
            Value::Int(..) | Value::Float(..) | Value::Bool(..) => {}
        }
    }

    /// Whether the value also reads as tensor arithmetic (names joined by
    /// `+`, `-`, `*`).
    pub fn reads_as_tensor(&self) -> bool {
        match self {
            Value::Ident(_) => true,
            Value::Arith(ArithOp::Add | ArithOp::Sub | ArithOp::Mul, a, b, _) => {
                a.reads_as_tensor() && b.reads_as_tensor()
            }
            _ => false,
        }
    }

    pub fn span(&self) -> SpanRange {
        match self {
            Value::Int(_, s) | Value::Float(_, s) | Value::Bool(_, s) => *s,
            Value::Ident(i) => SpanRange::single(i.span()),
            Value::Tuple(_, s) | Value::Arrow(_, _, s) | Value::Arith(_, _, _, s) => *s,
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
            Value::Arith(..) => "an arithmetic expression",
        }
    }
}

/// A value written as arithmetic over numbers and symbols (`(H - 4) / 2`),
/// as a dim.
pub fn value_to_dim(v: &Value) -> syn::Result<DimLit> {
    fn convert(v: &Value) -> syn::Result<DimExpr> {
        match v {
            Value::Int(n, s) if *n >= 0 => Ok(DimExpr::Num(*n as u64, s.start)),
            Value::Ident(i) => Ok(DimExpr::Sym(i.clone())),
            Value::Arith(op, a, b, _) => Ok(DimExpr::Bin(
                *op,
                Box::new(convert(a)?),
                Box::new(convert(b)?),
            )),
            Value::Int(_, s) => Err(syn::Error::new(
                s.start,
                "a dim must be a non-negative integer",
            )),
            other => Err(syn::Error::new(
                other.span().start,
                format!(
                    "a dim is a number, a symbol or arithmetic over them, not {}",
                    other.kind()
                ),
            )),
        }
    }
    Ok(match convert(v)? {
        DimExpr::Num(n, s) => DimLit::Lit(n, s),
        DimExpr::Sym(i) => DimLit::Sym(i),
        e => DimLit::Expr(Box::new(e), v.span()),
    })
}

/// Calls `f` on every layer of a chain's items: inside `seq`s, `repeat`s
/// and both branches of `if`s.
pub fn visit_item_layers(items: &[ChainItem], f: &mut impl FnMut(&Layer)) {
    visit_layers_items(items, f)
}

/// Calls `f` on every layer written in `e`: its chain, `seq`s, `repeat`s,
/// and the expressions inside its head.
pub fn visit_layers(e: &Expr, f: &mut impl FnMut(&Layer)) {
    visit_exprs(e, &mut |x| visit_layers_items(&x.items, f));
}

/// Calls `f` on every expression inside `e`'s head (a `cat`'s arguments,
/// both sides of an `if` or a `+`, ..), then on `e`: in source order, as
/// a head is written before the chain that follows it.
pub fn visit_exprs<'a>(e: &'a Expr, f: &mut impl FnMut(&'a Expr)) {
    match &e.head {
        Head::Var(_) => {}
        Head::Paren(inner) => visit_exprs(inner, f),
        Head::Cat { args, .. } => args.iter().for_each(|a| visit_exprs(a, f)),
        Head::Crop { src, to, .. } => {
            visit_exprs(src, f);
            if let CropTo::Like(l) = to {
                visit_exprs(l, f);
            }
        }
        Head::Split { src, .. } => visit_exprs(src, f),
        Head::If { then, els, .. } => {
            visit_exprs(then, f);
            visit_exprs(els, f);
        }
        Head::Binary { lhs, rhs, .. } => {
            visit_exprs(lhs, f);
            visit_exprs(rhs, f);
        }
    }
    f(e);
}

impl Body {
    /// The body's tensor expressions: each `let`'s, then the output and
    /// the further outputs.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.lets
            .iter()
            .filter_map(|l| l.expr.as_ref())
            .chain(std::iter::once(&self.output))
            .chain(&self.extra_outputs)
    }
}

fn visit_layers_items(list: &[ChainItem], f: &mut impl FnMut(&Layer)) {
    fn items(items: &[ChainItem], f: &mut impl FnMut(&Layer)) {
        for item in items {
            match item {
                ChainItem::Layer(l) => f(l),
                ChainItem::Seq(s) => items_of(&s.items, f),
                ChainItem::Repeat(r) => match &r.body {
                    RepeatBody::Items(i) => items_of(i, f),
                    RepeatBody::Layer(l) => f(l),
                },
                ChainItem::If(c) => {
                    items_of(&c.then, f);
                    items_of(&c.els, f);
                }
                ChainItem::Assert(_) => {}
            }
        }
    }
    fn items_of(i: &[ChainItem], f: &mut impl FnMut(&Layer)) {
        items(i, f)
    }
    items(list, f);
}
