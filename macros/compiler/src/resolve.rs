//! Names and arguments: each layer's op is looked up, its arguments are
//! matched to the op's parameters (positional or by keyword), checked for
//! kind and range, and defaulted. Layer names are checked for uniqueness.

use std::collections::HashMap;
use std::fmt;

use proc_macro2::Ident;

use crate::ast::{Arg, ChainItem, Layer, Network, ShapeLit, Value};
use crate::diag::{did_you_mean, Ctxt, SpanRange};

/// A value with the tokens it was written as (or the layer's, if defaulted).
#[derive(Clone, Copy, Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub span: SpanRange,
    /// Written by the user, not a default.
    pub written: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// `(top, bottom)`, `(left, right)`.
    Explicit { h: (u64, u64), w: (u64, u64) },
    /// `padding = same`: the output keeps the input's size (stride 1).
    Same,
}

#[derive(Clone, Debug)]
pub struct Conv2d {
    pub in_ch: Option<Spanned<u64>>,
    pub out_ch: Spanned<u64>,
    pub kernel: Spanned<(u64, u64)>,
    pub stride: Spanned<(u64, u64)>,
    pub padding: Spanned<Padding>,
    pub dilation: Spanned<(u64, u64)>,
    pub groups: Spanned<u64>,
    pub bias: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Clone, Debug)]
pub struct Pool2d {
    pub kind: PoolKind,
    pub kernel: Spanned<(u64, u64)>,
    pub stride: Spanned<(u64, u64)>,
}

#[derive(Clone, Debug)]
pub struct Linear {
    pub in_f: Option<Spanned<u64>>,
    pub out_f: Spanned<u64>,
    pub bias: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Sigmoid,
    Tanh,
}

#[derive(Clone, Debug)]
pub enum Op {
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
}

impl Op {
    pub fn has_params(&self) -> bool {
        matches!(self, Op::Conv2d(_) | Op::Linear(_))
    }
}

/// A chain item after resolution.
pub enum Item {
    Layer(Box<ResolvedLayer>),
    Assert(ShapeLit),
}

pub struct ResolvedLayer {
    pub name: Option<Ident>,
    /// How the layer is called in messages and the summary: its name, or
    /// the op as written (`max_pool(2)`).
    pub label: String,
    /// `None` when the op or its arguments were wrong (already reported).
    pub op: Option<Op>,
    pub span: SpanRange,
}

/// The ops `network!` knows, by every name it accepts.
const OPS: &[(&str, &[&str])] = &[
    ("Conv2d", &["Conv2d", "conv2d", "conv"]),
    ("MaxPool2d", &["MaxPool2d", "max_pool2d", "max_pool"]),
    ("AvgPool2d", &["AvgPool2d", "avg_pool2d", "avg_pool"]),
    ("Flatten", &["Flatten", "flatten"]),
    ("Linear", &["Linear", "linear"]),
    ("ReLU", &["ReLU", "relu"]),
    ("Sigmoid", &["Sigmoid", "sigmoid"]),
    ("Tanh", &["Tanh", "tanh"]),
    ("Softmax", &["Softmax", "softmax"]),
    ("LogSoftmax", &["LogSoftmax", "log_softmax"]),
];

pub fn resolve(cx: &Ctxt, net: &Network) -> Vec<Item> {
    let Some(chain) = &net.body else {
        return Vec::new();
    };
    if chain.source != net.input {
        cx.error(
            SpanRange::single(chain.source.span()),
            format!(
                "unknown tensor `{}`: the chain must start from the network's input `{}`",
                chain.source, net.input
            ),
        );
    }
    let mut seen: HashMap<String, SpanRange> = HashMap::new();
    chain
        .items
        .iter()
        .map(|item| match item {
            ChainItem::Assert(s) => Item::Assert(s.clone()),
            ChainItem::Layer(layer) => {
                if let Some(name) = &layer.name {
                    let key = name.to_string();
                    if let std::collections::hash_map::Entry::Vacant(slot) = seen.entry(key.clone())
                    {
                        slot.insert(SpanRange::single(name.span()));
                    } else {
                        cx.error(
                            SpanRange::single(name.span()),
                            format!(
                                "duplicate layer name `{key}`: parameter names must be unique \
                                 (`{key}.weight` would be ambiguous)\n\
                                 help: rename this layer, e.g. `{key}_2`"
                            ),
                        );
                    }
                }
                Item::Layer(Box::new(resolve_layer(cx, layer)))
            }
        })
        .collect()
}

fn resolve_layer(cx: &Ctxt, layer: &Layer) -> ResolvedLayer {
    let label = match (&layer.name, &layer.args) {
        (Some(n), _) => n.to_string(),
        (None, Some(Ok(args))) => format!("{}({})", layer.op, fmt_args(args)),
        (None, _) => layer.op.to_string(),
    };
    let written = layer.op.to_string();
    let canonical = OPS
        .iter()
        .find(|(_, names)| names.contains(&written.as_str()))
        .map(|(c, _)| *c);
    let op = match canonical {
        None => {
            let all = OPS.iter().flat_map(|(_, n)| n.iter().copied());
            let hint = match did_you_mean(&written, all) {
                Some(s) => format!("\nhelp: did you mean `{s}`?"),
                None => format!(
                    "\nhelp: the ops are {}",
                    OPS.iter()
                        .map(|(_, names)| names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join("/"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            cx.error(
                SpanRange::single(layer.op.span()),
                format!("unknown op `{written}`{hint}"),
            );
            None
        }
        Some(canonical) => match &layer.args {
            Some(Err(())) => None,
            args => {
                let args: &[Arg] = match args {
                    Some(Ok(a)) => a,
                    _ => &[],
                };
                let before = cx.error_count();
                let op = resolve_op(cx, canonical, layer, args);
                op.filter(|_| cx.error_count() == before)
            }
        },
    };
    if let (Some(op), None) = (&op, &layer.name) {
        if op.has_params() {
            cx.error(
                SpanRange::single(layer.op.span()),
                format!(
                    "`{written}` has parameters, so it needs a name, which becomes its \
                     parameter names (`conv1.weight`)\nhelp: write `conv1: {written}(..)`"
                ),
            );
        }
    }
    ResolvedLayer {
        name: layer.name.clone(),
        label,
        op,
        span: layer.span,
    }
}

fn resolve_op(cx: &Ctxt, op: &str, layer: &Layer, args: &[Arg]) -> Option<Op> {
    let whole = layer.span;
    match op {
        "Conv2d" => {
            let a = Args::new(cx, op, whole, args, &["out_channels", "kernel"], CONV_KEYS);
            // Every argument is checked before any error returns, so all
            // of a layer's mistakes are reported together.
            let channels = a.channels("out_channels");
            let kernel = a.pair("kernel", 1, None);
            let stride = a.pair_or("stride", 1, (1, 1));
            let dilation = a.pair_or("dilation", 1, (1, 1));
            let padding = a.padding();
            let groups = a.uint_or("groups", 1, 1);
            let bias = a.boolean("bias", true);
            let Some(kernel) = kernel? else {
                a.missing(
                    "`Conv2d` needs a kernel size\nhelp: write `kernel = 3` or `kernel = (3, 5)`",
                );
                return None;
            };
            let ((in_ch, out_ch), stride, dilation) = (channels?, stride?, dilation?);
            let (padding, groups, bias) = (padding?, groups?, bias?);
            if dilation.value.0 != dilation.value.1 {
                cx.error(
                    dilation.span,
                    "per-axis dilation with different values is not supported yet\n\
                     help: use the same dilation on both axes",
                );
                return None;
            }
            Some(Op::Conv2d(Box::new(Conv2d {
                in_ch,
                out_ch,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            })))
        }
        "MaxPool2d" | "AvgPool2d" => {
            let a = Args::new(cx, op, whole, args, &["kernel", "stride"], POOL_KEYS);
            let (kernel, stride) = (a.pair("kernel", 1, None), a.pair("stride", 1, None));
            let Some(kernel) = kernel? else {
                cx.error(
                    whole,
                    format!("`{op}` needs a kernel size\nhelp: write `{}(2)`", layer.op),
                );
                return None;
            };
            let stride = match stride? {
                Some(s) => s,
                None => Spanned {
                    written: false,
                    ..kernel
                },
            };
            let kind = if op == "MaxPool2d" {
                PoolKind::Max
            } else {
                PoolKind::Avg
            };
            Some(Op::Pool2d(Pool2d {
                kind,
                kernel,
                stride,
            }))
        }
        "Flatten" => {
            let a = Args::new(
                cx,
                op,
                whole,
                args,
                &["start_dim", "end_dim"],
                &["start_dim", "end_dim"],
            );
            let (start, end) = (a.int("start_dim", Some(1)), a.int("end_dim", Some(-1)));
            Some(Op::Flatten {
                start: start?,
                end: end?,
            })
        }
        "Linear" => {
            let a = Args::new(
                cx,
                op,
                whole,
                args,
                &["out_features"],
                &["out_features", "bias"],
            );
            let (channels, bias) = (a.channels("out_features"), a.boolean("bias", true));
            let ((in_f, out_f), bias) = (channels?, bias?);
            Some(Op::Linear(Linear { in_f, out_f, bias }))
        }
        "Softmax" | "LogSoftmax" => {
            let a = Args::new(cx, op, whole, args, &["dim"], &["dim"]);
            let dim = a.int("dim", None)?;
            Some(Op::Softmax {
                dim,
                log: op == "LogSoftmax",
            })
        }
        act => {
            Args::new(cx, op, whole, args, &[], &[]);
            Some(Op::Act(match act {
                "ReLU" => Activation::Relu,
                "Sigmoid" => Activation::Sigmoid,
                _ => Activation::Tanh,
            }))
        }
    }
}

const CONV_KEYS: &[&str] = &[
    "out_channels",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "groups",
    "bias",
];
const POOL_KEYS: &[&str] = &["kernel", "stride"];

/// Accepted spellings of keyword arguments, PyTorch's included.
fn canonical_key(key: &str) -> &str {
    match key {
        "kernel_size" => "kernel",
        "out" | "out_channels" | "channels" => "out_channels",
        other => other,
    }
}

/// A layer's arguments matched to the op's parameters.
struct Args<'a> {
    cx: &'a Ctxt,
    op: &'a str,
    whole: SpanRange,
    values: HashMap<&'static str, &'a Value>,
    /// An unknown keyword was reported: a "missing argument" error would
    /// most likely be the same typo twice.
    had_unknown: bool,
}

impl<'a> Args<'a> {
    /// Matches `args` to `positional` (in order) and `keys`, reporting
    /// unknown, duplicate and surplus arguments.
    fn new(
        cx: &'a Ctxt,
        op: &'a str,
        whole: SpanRange,
        args: &'a [Arg],
        positional: &[&'static str],
        keys: &[&'static str],
    ) -> Self {
        let mut values: HashMap<&'static str, &'a Value> = HashMap::new();
        let mut next_positional = 0;
        let mut seen_keyword = false;
        let mut had_unknown = false;
        for arg in args {
            let key: &'static str = match &arg.key {
                None => {
                    if seen_keyword {
                        cx.error(
                            arg.span,
                            "a positional argument cannot follow a keyword argument",
                        );
                        continue;
                    }
                    let Some(k) = positional.get(next_positional) else {
                        let msg = if positional.is_empty() {
                            format!("`{op}` takes no arguments")
                        } else {
                            format!(
                                "`{op}` takes at most {} positional argument{} ({}); name the others",
                                positional.len(),
                                if positional.len() == 1 { "" } else { "s" },
                                positional.join(", ")
                            )
                        };
                        cx.error(arg.span, msg);
                        continue;
                    };
                    next_positional += 1;
                    k
                }
                Some(k) => {
                    seen_keyword = true;
                    let written = k.to_string();
                    let canon = canonical_key(&written);
                    match keys.iter().find(|known| **known == canon) {
                        Some(known) => known,
                        None => {
                            let hint = match did_you_mean(&written, keys.iter().copied()) {
                                Some(s) => format!("\nhelp: did you mean `{s}`?"),
                                None if keys.is_empty() => String::new(),
                                None => format!("\nhelp: `{op}` takes {}", keys.join(", ")),
                            };
                            let msg = if keys.is_empty() {
                                format!("`{op}` takes no arguments")
                            } else {
                                format!("unknown argument `{written}` for `{op}`{hint}")
                            };
                            cx.error(SpanRange::single(k.span()), msg);
                            had_unknown = true;
                            continue;
                        }
                    }
                }
            };
            if values.contains_key(key) {
                cx.error(
                    arg.span,
                    format!("duplicate argument `{key}` for `{op}`\nhelp: give each argument once"),
                );
                continue;
            }
            values.insert(key, &arg.value);
        }
        Self {
            cx,
            op,
            whole,
            values,
            had_unknown,
        }
    }

    /// Reports a missing required argument, unless a misspelt one was
    /// reported already.
    fn missing(&self, message: impl Into<String>) {
        if !self.had_unknown {
            self.cx.error(self.whole, message);
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.values.get(key).copied()
    }

    fn wrong_kind(&self, key: &str, want: &str, v: &Value) {
        let msg = match v {
            Value::Ident(i) if i == "same" || i == "valid" => format!(
                "`{i}` is only valid for `padding`; `{key}` of `{}` takes {want}",
                self.op
            ),
            Value::Ident(i) => format!(
                "`{i}` is a symbol, but `{key}` of `{}` needs {want} known at compile time",
                self.op
            ),
            _ => format!("`{key}` of `{}` takes {want}, found {}", self.op, v.kind()),
        };
        self.cx.error(v.span(), msg);
    }

    /// A non-negative integer >= `min`.
    fn uint_value(&self, key: &str, min: u64, v: &Value) -> Option<u64> {
        match v {
            Value::Int(n, s) if *n < 0 => {
                self.cx
                    .error(*s, format!("`{key}` cannot be negative, found {n}"));
                None
            }
            Value::Int(n, s) if (*n as u64) < min => {
                self.cx
                    .error(*s, format!("`{key}` must be at least {min}, found {n}"));
                None
            }
            Value::Int(n, _) => Some(*n as u64),
            other => {
                self.wrong_kind(key, "an integer", other);
                None
            }
        }
    }

    /// `Some(None)`: absent with no default. `None`: an error was reported.
    fn uint(&self, key: &str, min: u64, default: Option<u64>) -> Option<Option<Spanned<u64>>> {
        match self.get(key) {
            None => Some(default.map(|value| Spanned {
                value,
                span: self.whole,
                written: false,
            })),
            Some(v) => self.uint_value(key, min, v).map(|value| {
                Some(Spanned {
                    value,
                    span: v.span(),
                    written: true,
                })
            }),
        }
    }

    fn uint_or(&self, key: &str, min: u64, default: u64) -> Option<Spanned<u64>> {
        let v = self.uint(key, min, Some(default))?;
        Some(v.unwrap_or(Spanned {
            value: default,
            span: self.whole,
            written: false,
        }))
    }

    fn pair_or(&self, key: &str, min: u64, default: (u64, u64)) -> Option<Spanned<(u64, u64)>> {
        let v = self.pair(key, min, Some(default))?;
        Some(v.unwrap_or(Spanned {
            value: default,
            span: self.whole,
            written: false,
        }))
    }

    /// An integer or an `(h, w)` pair of integers >= `min`.
    fn pair(
        &self,
        key: &str,
        min: u64,
        default: Option<(u64, u64)>,
    ) -> Option<Option<Spanned<(u64, u64)>>> {
        let Some(v) = self.get(key) else {
            return Some(default.map(|value| Spanned {
                value,
                span: self.whole,
                written: false,
            }));
        };
        let value = match v {
            Value::Tuple(items, _) if items.len() == 2 => {
                let h = self.uint_value(key, min, &items[0]);
                let w = self.uint_value(key, min, &items[1]);
                (h?, w?)
            }
            Value::Int(..) => {
                let n = self.uint_value(key, min, v)?;
                (n, n)
            }
            other => {
                self.wrong_kind(key, "an integer or an `(h, w)` pair", other);
                return None;
            }
        };
        Some(Some(Spanned {
            value,
            span: v.span(),
            written: true,
        }))
    }

    fn int(&self, key: &str, default: Option<i64>) -> Option<Spanned<i64>> {
        match self.get(key) {
            None => match default {
                Some(value) => Some(Spanned {
                    value,
                    span: self.whole,
                    written: false,
                }),
                None => {
                    self.missing(format!(
                        "`{}` needs `{key}`\nhelp: write `{}({key} = 1)`",
                        self.op, self.op
                    ));
                    None
                }
            },
            Some(Value::Int(n, s)) => Some(Spanned {
                value: *n,
                span: *s,
                written: true,
            }),
            Some(other) => {
                self.wrong_kind(key, "an integer", other);
                None
            }
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Option<bool> {
        match self.get(key) {
            None => Some(default),
            Some(Value::Bool(b, _)) => Some(*b),
            Some(other) => {
                self.wrong_kind(key, "`true` or `false`", other);
                None
            }
        }
    }

    /// `out` or `in -> out` (in and out both >= 1).
    #[allow(clippy::type_complexity)]
    fn channels(&self, key: &str) -> Option<(Option<Spanned<u64>>, Spanned<u64>)> {
        let spanned = |value, v: &Value| Spanned {
            value,
            span: v.span(),
            written: true,
        };
        match self.get(key) {
            None => {
                self.missing(format!(
                    "`{}` needs its output size as the first argument, e.g. `{}(16)`",
                    self.op, self.op
                ));
                None
            }
            Some(Value::Arrow(i, o, _)) => {
                let iv = self.uint_value(key, 1, i);
                let ov = self.uint_value(key, 1, o);
                Some((Some(spanned(iv?, i)), spanned(ov?, o)))
            }
            Some(v) => {
                let n = self.uint_value(key, 1, v)?;
                Some((None, spanned(n, v)))
            }
        }
    }

    /// `padding`: an integer, `(h, w)`, `(left, right, top, bottom)` (the
    /// order of PyTorch's `F.pad`), `same` or `valid`.
    fn padding(&self) -> Option<Spanned<Padding>> {
        let key = "padding";
        let Some(v) = self.get(key) else {
            return Some(Spanned {
                value: Padding::Explicit {
                    h: (0, 0),
                    w: (0, 0),
                },
                span: self.whole,
                written: false,
            });
        };
        let value = match v {
            Value::Ident(i) if i == "same" => Padding::Same,
            Value::Ident(i) if i == "valid" => Padding::Explicit {
                h: (0, 0),
                w: (0, 0),
            },
            Value::Int(..) => {
                let n = self.uint_value(key, 0, v)?;
                Padding::Explicit {
                    h: (n, n),
                    w: (n, n),
                }
            }
            Value::Tuple(items, _) if items.len() == 2 || items.len() == 4 => {
                let ns: Vec<Option<u64>> =
                    items.iter().map(|i| self.uint_value(key, 0, i)).collect();
                let ns: Vec<u64> = ns.into_iter().collect::<Option<_>>()?;
                if ns.len() == 2 {
                    Padding::Explicit {
                        h: (ns[0], ns[0]),
                        w: (ns[1], ns[1]),
                    }
                } else {
                    Padding::Explicit {
                        h: (ns[2], ns[3]),
                        w: (ns[0], ns[1]),
                    }
                }
            }
            other => {
                self.wrong_kind(
                    key,
                    "an integer, `(h, w)`, `(left, right, top, bottom)`, `same` or `valid`",
                    other,
                );
                return None;
            }
        };
        Some(Spanned {
            value,
            span: v.span(),
            written: true,
        })
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
        }
    }
}
