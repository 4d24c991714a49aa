//! The ops, one module per family. A family module is the one home of its
//! ops: the names they are written with, their argument schema, their typed
//! parameters and how the arguments are read into them, the shape rule, the
//! parameters and buffers (state_dict names, shapes, init, MACs, summary
//! text) and the call emitted into `forward`. The stages only dispatch to
//! it: `resolve` through [`OpDef::resolve`], `infer::step`,
//! `lower::lower_op` and `emit::gen_step` with one arm per op.
//!
//! How to add one: `docs/adding-an-op.md`.

pub mod activation;
pub mod args;
pub mod attention;
pub mod conv;
pub mod conv1d;
pub mod dropout;
pub mod embedding;
pub mod filter;
pub mod layer_norm;
pub mod linear;
pub mod merge;
pub mod norm;
pub mod pool;
pub mod pool1d;
pub mod reshape;
pub mod resize;
pub mod rnn;
pub mod vit;
pub mod window;

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use crate::ast::{Arg, Layer};
use crate::diag::Ctxt;
use crate::emit::{usize_lit, CodeEnv};
use crate::lower::{FieldIr, FieldKind, Holder, InitIr, ParamIr, StepOp};
use crate::resolve::{Op, ResolvedLayer};
use crate::shape::{Dim, Shape};

use args::Args;

/// One op as the user writes it: `Conv2d(6, kernel = 5)`.
pub struct OpDef {
    /// The name messages and the reference use (PyTorch's class name).
    pub name: &'static str,
    /// Every name it is written with, `name` first.
    pub spellings: &'static [&'static str],
    /// Other frameworks' names for the same layer (Keras, Flax, TensorFlow),
    /// which are not accepted but suggest this op in the error.
    pub aliases: &'static [Alias],
    /// The arguments that may be given without a keyword, in order.
    pub positional: &'static [&'static str],
    /// Every argument, in the order messages list them.
    pub args: &'static [ArgSpec],
    /// Reads the matched arguments into the op's typed parameters,
    /// reporting what is wrong; `None` after an error.
    pub resolve: fn(&Args, &Layer) -> Option<Op>,
}

/// Another framework's name for an op: `Dense` is Keras's `Linear`.
#[derive(Clone, Copy, Debug)]
pub struct Alias {
    pub name: &'static str,
    /// Whose name it is: "Keras", "Flax", "TensorFlow".
    pub from: &'static str,
    /// What to write here, `{args}` standing for the layer's arguments as
    /// written (`Linear({args})`; `AdaptiveAvgPool2d(1) -> flatten`).
    pub write: &'static str,
}

impl Alias {
    pub const fn new(name: &'static str, from: &'static str, write: &'static str) -> Self {
        Self { name, from, write }
    }
}

/// The op another framework calls `name` (compared ignoring case and
/// underscores), with what to write here.
pub fn alias(name: &str) -> Option<(&'static OpDef, &'static Alias)> {
    let key = |s: &str| s.to_lowercase().replace('_', "");
    let k = key(name);
    OPS.iter()
        .flat_map(|d| d.aliases.iter().map(move |a| (*d, a)))
        .find(|(_, a)| key(a.name) == k)
}

/// The help for an unknown op that names a layer another way: another
/// framework's name (`Dense(128)`: "write `Linear(128)`"), or a kernel size
/// in the name (`Conv3x3(16)`: "write `Conv2d(16, kernel = 3)`"). `args` is
/// the layer's arguments as written.
pub fn by_meaning(name: &str, args: &str) -> Option<String> {
    if let Some((def, a)) = alias(name) {
        let write = a.write.replace("{args}", args);
        return Some(format!(
            "`{name}` is {}'s name for what netdsl calls `{}`: write `{write}`",
            a.from, def.name
        ));
    }
    // `Conv3x3`, `conv1x1`, `Conv5x5`: a convolution with that kernel.
    let lower = name.to_lowercase();
    let rest = lower.strip_prefix("conv")?;
    let (a, b) = rest.split_once('x')?;
    let (kh, kw): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    let kernel = if kh == kw {
        kh.to_string()
    } else {
        format!("({kh}, {kw})")
    };
    let args = if args.is_empty() {
        "out".to_string()
    } else {
        args.to_string()
    };
    Some(format!(
        "a {kh}x{kw} convolution is `Conv2d` with a kernel: write `Conv2d({args}, kernel = {kernel})`"
    ))
}

/// One argument of an op: its schema entry.
#[derive(Clone, Copy, Debug)]
pub struct ArgSpec {
    pub name: &'static str,
    /// Other keywords accepted for it (PyTorch's spellings).
    pub aliases: &'static [&'static str],
    pub kind: ArgKind,
    /// The default as the reference writes it; `None`: required.
    pub default: Option<&'static str>,
    /// What it means, one line.
    pub doc: &'static str,
}

impl ArgSpec {
    pub const fn new(
        name: &'static str,
        kind: ArgKind,
        default: Option<&'static str>,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            aliases: &[],
            kind,
            default,
            doc,
        }
    }

    /// The same argument, also accepted as `aliases`.
    pub const fn aka(self, aliases: &'static [&'static str]) -> Self {
        Self { aliases, ..self }
    }
}

/// What an argument takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// `C_out`, or `C_in -> C_out`: both positive integers.
    Channels,
    /// An integer, possibly negative (a dim).
    Int,
    /// A non-negative integer.
    Count,
    /// An integer, or an `(h, w)` pair of them.
    Pair,
    /// An integer, `(h, w)`, `(left, right, top, bottom)`, `same` or `valid`.
    Padding,
    /// A number, integer or float.
    Number,
    /// A positive number, or an `(h, w)` pair of them.
    Scale,
    Bool,
    /// One of the listed names.
    Choice(&'static [&'static str]),
    /// A weight initialisation scheme: `init = kaiming_normal`.
    Init,
    /// A size or a tuple of sizes: `E`, `(T, E)`.
    Shape,
    /// A tensor bound earlier, or a tuple of them: `h0`, `(h0, c0)`.
    Tensors,
}

/// Every op `network!` knows, in the order the unknown-op help lists them.
pub const OPS: &[&OpDef] = &[
    &conv::CONV2D,
    &pool::MAX_POOL2D,
    &pool::AVG_POOL2D,
    &reshape::FLATTEN,
    &linear::LINEAR,
    &activation::RELU,
    &activation::SIGMOID,
    &activation::TANH,
    &activation::SOFTMAX,
    &activation::LOG_SOFTMAX,
    &norm::BATCH_NORM2D,
    &norm::BATCH_NORM1D,
    &dropout::DROPOUT,
    &activation::LEAKY_RELU,
    &activation::GELU,
    &activation::SILU,
    &activation::RELU6,
    &activation::HARDSWISH,
    &pool::ADAPTIVE_AVG_POOL2D,
    &pool::ADAPTIVE_MAX_POOL2D,
    &conv::CONV_TRANSPOSE2D,
    &resize::UPSAMPLE,
    &resize::PIXEL_SHUFFLE,
    &conv1d::CONV1D,
    &pool1d::MAX_POOL1D,
    &pool1d::AVG_POOL1D,
    &pool1d::ADAPTIVE_AVG_POOL1D,
    &pool1d::ADAPTIVE_MAX_POOL1D,
    &reshape::TRANSPOSE,
    &embedding::EMBEDDING,
    &filter::MEAN_FILTER,
    &filter::GAUSSIAN,
    &filter::SOBEL,
    &filter::LAPLACIAN,
    &filter::IMPULSE,
    &filter::SHIFT,
    &filter::MEDIAN,
    &filter::FILTER,
    &layer_norm::LAYER_NORM,
    &layer_norm::RMS_NORM,
    &attention::MULTI_HEAD_ATTENTION,
    &vit::PATCH_EMBED,
    &vit::CLASS_TOKEN,
    &vit::POS_EMBEDDING,
    &vit::SINUSOIDAL_ENCODING,
    &vit::DROP_PATH,
    &vit::SELECT,
    &rnn::RNN,
    &rnn::LSTM,
    &rnn::GRU,
    &reshape::REVERSE,
];

/// The op written `name`, by any of its spellings.
pub fn lookup(name: &str) -> Option<&'static OpDef> {
    OPS.iter().copied().find(|d| d.spellings.contains(&name))
}

/// The op `layer` names, resolved against `def`: the arguments matched to
/// its schema, then read into its parameters.
/// `known`: the names bound where the layer is written (the input's sizes,
/// a block's parameters, named values), for messages about an unbound one.
pub fn resolve(
    cx: &Ctxt,
    def: &OpDef,
    layer: &Layer,
    args: &[Arg],
    known: Vec<String>,
) -> Option<Op> {
    let mut a = Args::new(cx, def, layer.span, args);
    a.known = known;
    (def.resolve)(&a, layer)
}

/// What lowering one layer makes: its summary text, its step, its field
/// (a layer with parameters) and its multiply-adds per sample.
pub type Lowered = (String, StepOp, Option<FieldIr>, Macs);

/// Multiply-adds per sample, symbolic in the input's symbols: a sum of
/// terms, each a factor times a product of dims (`27 * H * W` for a 3x3
/// convolution from 3 channels to 1). Known when no term has a symbolic
/// dim; otherwise the summary prints `?` and `summary_at` evaluates it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Macs {
    /// `(factor, dims)`: `factor * dims[0] * dims[1] * ..`; the dims are
    /// never known (those are folded into the factor).
    pub terms: Vec<(u64, Vec<Dim>)>,
}

impl Macs {
    pub fn zero() -> Self {
        Self::default()
    }

    /// `factor` times the product of `dims`.
    pub fn term(factor: u64, dims: &[Dim]) -> Self {
        let mut k = factor;
        let mut syms = Vec::new();
        for d in dims {
            match d.known() {
                Some(n) => k = k.saturating_mul(n),
                None => syms.push(d.clone()),
            }
        }
        if k == 0 {
            return Self::zero();
        }
        Self {
            terms: vec![(k, syms)],
        }
    }

    /// `factor` per element of a sample of `shape` (the dims after the
    /// batch dim).
    pub fn per_sample(shape: &[Dim], factor: u64) -> Self {
        Self::term(factor, shape.get(1..).unwrap_or_default())
    }

    /// The number, when no term has a symbolic dim.
    pub fn known(&self) -> Option<u64> {
        self.terms.iter().try_fold(0u64, |acc, (k, dims)| {
            dims.is_empty().then(|| acc.saturating_add(*k))
        })
    }
}

/// `a + &b`: the terms of both, terms with the same dims merged.
impl std::ops::Add<&Macs> for Macs {
    type Output = Macs;

    fn add(mut self, other: &Macs) -> Macs {
        for (k, dims) in &other.terms {
            match self.terms.iter_mut().find(|(_, d)| d == dims) {
                Some((n, _)) => *n = n.saturating_add(*k),
                None => self.terms.push((*k, dims.clone())),
            }
        }
        self
    }
}

/// One layer being lowered: where it is and the shapes around it.
pub struct LowerCx<'a> {
    pub layer: &'a ResolvedLayer,
    /// Its index in the chain.
    pub index: usize,
    pub input: &'a Shape,
    pub output: &'a Shape,
    /// The prefix of the enclosing block use's parameter names (`layer1.0.`).
    pub outer: &'a str,
    /// The struct field it becomes, if it has parameters.
    pub ident: Ident,
    /// The graph's value variables so far (a layer's tensor arguments name
    /// them), and their shapes.
    pub values: &'a [Ident],
    pub value_shapes: &'a [Option<Shape>],
}

impl<'a> LowerCx<'a> {
    pub fn new(
        layer: &'a ResolvedLayer,
        index: usize,
        input: &'a Shape,
        output: &'a Shape,
        outer: &'a str,
        values: &'a [Ident],
        value_shapes: &'a [Option<Shape>],
    ) -> Self {
        let span = layer.name.as_ref().map_or(Span::call_site(), Ident::span);
        // Only layers with parameters become fields, and those always have a
        // path (resolve reports one without a name).
        let ident = match layer.path.as_slice() {
            [] => Ident::new("unnamed", span),
            path => Ident::new(&crate::lower::field_name(path), span),
        };
        Self {
            layer,
            index,
            input,
            output,
            outer,
            ident,
            values,
            value_shapes,
        }
    }

    /// The variable holding graph value `v`.
    pub fn value(&self, v: usize) -> Option<Ident> {
        self.values.get(v).cloned()
    }

    /// The state_dict entry `<path>.<member>`; `member` may be a dotted
    /// path into a sub-layer (`out_proj.weight`), or empty for a layer that
    /// is one tensor named by its path.
    pub fn param(&self, member: &str, shape: Vec<u64>, init: InitIr) -> ParamIr {
        self.param_at(member, member, shape, init)
    }

    /// A state_dict entry `<path>.<name>` held at `member`, when the two
    /// differ: PyTorch's `weight_ih_l1_reverse` lives at `weight_ih.3` of a
    /// recurrent layer's holder (a numeric segment indexes a list).
    pub fn param_at(&self, member: &str, name: &str, shape: Vec<u64>, init: InitIr) -> ParamIr {
        let path = self.layer.path.join(".");
        let name = if name.is_empty() {
            format!("{}{path}", self.outer)
        } else {
            format!("{}{path}.{name}", self.outer)
        };
        ParamIr {
            member: member.to_string(),
            name,
            shape,
            init,
        }
    }

    /// The layer's field: `holder` holding `params`; `absent` members are
    /// `NoBias`.
    pub fn field(
        &self,
        holder: Holder,
        params: Vec<ParamIr>,
        absent: Vec<&'static str>,
    ) -> FieldIr {
        FieldIr {
            ident: self.ident.clone(),
            kind: FieldKind::Layer(holder),
            params,
            absent,
            branch: Vec::new(),
        }
    }
}

/// A size in an op's summary text: a known one as its number, a symbolic
/// one in braces (`{H/2}`), which `summary_at` evaluates at the sizes it is
/// given. [`plain`] removes the braces for every other use of the text.
pub fn sized(d: &Dim) -> String {
    match d.known() {
        Some(n) => n.to_string(),
        None => format!("{{{d}}}"),
    }
}

/// An op's summary text without the braces of its [`sized`] sizes.
pub fn plain(text: &str) -> String {
    netdsl_summary::fill(text, |e| Ok::<_, ()>(e.to_string())).unwrap_or_else(|()| text.to_string())
}

/// One step being emitted: `let x = f(src);`.
pub struct EmitCx<'a> {
    pub src: &'a TokenStream,
    pub x: &'a Ident,
    pub env: &'a CodeEnv,
    /// Expressions for the mode flags and the dropout generator, as the
    /// network or a block reaches them.
    pub training: TokenStream,
    pub fusion_on: TokenStream,
    pub rng: TokenStream,
}

impl<'a> EmitCx<'a> {
    pub fn new(src: &'a TokenStream, x: &'a Ident, env: &'a CodeEnv) -> Self {
        Self {
            src,
            x,
            env,
            training: env.training(),
            fusion_on: env.fusion_on(),
            rng: env.rng(),
        }
    }
}

pub fn pair_tokens((a, b): (u64, u64)) -> TokenStream {
    let (a, b) = (usize_lit(a), usize_lit(b));
    quote!((#a, #b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_stay_symbolic() {
        let h = Dim::sym("H");
        let shape = [Dim::sym("B"), Dim::Known(8), h.clone(), Dim::Known(4)];
        let m = Macs::per_sample(&shape, 3);
        assert_eq!(m.terms, vec![(96, vec![h.clone()])]);
        assert_eq!(m.known(), None);
        let sum = m.clone() + &m + &Macs::term(5, &[Dim::Known(2)]);
        assert_eq!(sum.terms, vec![(192, vec![h]), (10, vec![])]);
        assert_eq!(
            Macs::per_sample(&[Dim::sym("B"), Dim::Known(3)], 2).known(),
            Some(6)
        );
        assert_eq!(Macs::zero().known(), Some(0));
        assert_eq!(Macs::per_sample(&shape, 0), Macs::zero());
    }

    /// `summary_at` evaluates dims as the compiler prints them: the value
    /// must be what the shape rules compute.
    #[test]
    fn printed_dims_evaluate_as_the_shape_rules_compute() {
        use crate::shape::{product, Lin};
        let h = Lin::sym("H");
        let lins = [
            h.clone(),
            h.floor_div(2),
            h.scale(3).floor_div(2).shift(1),
            h.floor_div(4).shift(-3),
            h.shift(-1).floor_div(2).shift(1),
            h.floor_div(4).scale(2),
            h.shift(-1).floor_div(2).shift(-1).floor_div(2).shift(1),
            h.sub(&h.floor_div(2)),
            h.scale(3).shift(1).floor_div(6).scale(5).shift(2),
        ];
        for lin in &lins {
            for s in [16u64, 17, 24, 29, 64, 99] {
                let text = Dim::Lin(lin.clone()).to_string();
                let v = netdsl_summary::eval(&text, &|n| (n == "H").then_some(s));
                assert_eq!(v, Ok(lin.at(s) as u64), "{text} at H = {s}");
            }
        }
        let dims = [
            Dim::Known(16),
            Dim::Lin(h.floor_div(2)),
            Dim::Lin(Lin::sym("W").shift(-2)),
        ];
        let text = product(&dims).to_string();
        let v = netdsl_summary::eval(&text, &|n| match n {
            "H" => Some(32),
            "W" => Some(10),
            _ => None,
        });
        assert_eq!(v, Ok(16 * 16 * 8), "{text}");
        assert_eq!(
            plain(&format!("Crop({} x {})", sized(&dims[1]), sized(&dims[0]))),
            "Crop(H/2 x 16)"
        );
    }

    #[test]
    fn every_spelling_names_one_op() {
        let mut seen = std::collections::HashSet::new();
        for def in OPS {
            assert_eq!(def.spellings.first(), Some(&def.name), "{}", def.name);
            for s in def.spellings {
                assert!(seen.insert(*s), "`{s}` names two ops");
            }
        }
    }

    #[test]
    fn aliases_are_not_spellings_and_name_one_op() {
        let key = |s: &str| s.to_lowercase().replace('_', "");
        let mut seen = std::collections::HashSet::new();
        for def in OPS {
            for a in def.aliases {
                assert!(
                    !OPS.iter().any(|d| d.spellings.contains(&a.name)),
                    "`{}` is a spelling, never reached as an alias",
                    a.name
                );
                assert!(seen.insert(key(a.name)), "`{}` names two ops", a.name);
                assert!(!a.from.is_empty() && !a.write.is_empty());
            }
        }
        let help = by_meaning("Dense", "128").unwrap();
        assert!(help.ends_with("write `Linear(128)`"), "{help}");
        let help = by_meaning("conv1x3", "").unwrap();
        assert!(
            help.ends_with("write `Conv2d(out, kernel = (1, 3))`"),
            "{help}"
        );
        assert!(by_meaning("Frobnicate", "").is_none());
    }

    #[test]
    fn schemas_are_consistent() {
        for def in OPS {
            let mut names = std::collections::HashSet::new();
            for arg in def.args {
                assert!(
                    !arg.doc.is_empty(),
                    "{}: `{}` has no doc",
                    def.name,
                    arg.name
                );
                for n in std::iter::once(&arg.name).chain(arg.aliases) {
                    assert!(names.insert(*n), "{}: `{n}` is two arguments", def.name);
                }
            }
            for p in def.positional {
                assert!(
                    def.args.iter().any(|a| a.name == *p),
                    "{}: positional `{p}` is not an argument",
                    def.name
                );
            }
        }
    }
}
