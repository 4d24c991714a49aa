//! A layer's arguments matched to its op's schema: positional or by
//! keyword, checked for kind and range, defaulted. Each op family's
//! `resolve_*` function reads its typed parameters through [`Args`].

use std::collections::HashMap;

use crate::ast::{Arg, Value};
use crate::diag::{did_you_mean, Ctxt, SpanRange};
use crate::ops::conv::Padding;
use crate::ops::OpDef;
use crate::resolve::Spanned;

/// The weight initialisation a layer asks for (`init = ..`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WeightInit {
    /// PyTorch's default: kaiming_uniform with a = sqrt(5).
    #[default]
    Default,
    KaimingUniform,
    KaimingNormal,
    XavierUniform,
    XavierNormal,
}

/// Whether a written value could be an argument of this kind (to name a
/// positional argument by the parameter it most likely is).
fn fits(kind: &crate::ops::ArgKind, v: &Value) -> bool {
    use crate::ops::ArgKind as K;
    match v {
        Value::Int(..) | Value::Arith(..) => matches!(
            kind,
            K::Channels
                | K::Int
                | K::Count
                | K::Pair
                | K::Padding
                | K::Number
                | K::Scale
                | K::Shape
        ),
        Value::Float(..) => matches!(kind, K::Number | K::Scale),
        Value::Bool(..) => matches!(kind, K::Bool),
        Value::Tuple(..) => matches!(
            kind,
            K::Pair | K::Padding | K::Scale | K::Shape | K::Tensors
        ),
        Value::Arrow(..) => matches!(kind, K::Channels),
        Value::Ident(_) => !matches!(kind, K::Bool),
    }
}

/// A float as DSL source writes it (`1.0`, not `1`).
struct Float(f64);

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.fract() == 0.0 && self.0.abs() < 1e15 {
            write!(f, "{:.1}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// A layer's arguments matched to the op's parameters.
pub struct Args<'a> {
    pub cx: &'a Ctxt,
    pub op: &'a str,
    pub whole: SpanRange,
    values: HashMap<&'static str, &'a Value>,
    /// An unknown keyword was reported: a "missing argument" error would
    /// most likely be the same typo twice.
    had_unknown: bool,
    /// The names bound where the layer is written, for the message about
    /// a name bound nowhere.
    pub known: Vec<String>,
    /// The arguments written by keyword (`stride = 2`), so that an edit
    /// is written the way the argument was.
    keyword: Vec<&'static str>,
}

impl<'a> Args<'a> {
    /// Matches `args` to `positional` (in order) and `keys`, reporting
    /// unknown, duplicate and surplus arguments.
    pub fn new(cx: &'a Ctxt, def: &'a OpDef, whole: SpanRange, args: &'a [Arg]) -> Self {
        let (op, positional) = (def.name, def.positional);
        let keys: Vec<&'static str> = def.args.iter().map(|a| a.name).collect();
        let mut values: HashMap<&'static str, &'a Value> = HashMap::new();
        let mut next_positional = 0;
        let mut seen_keyword = false;
        let mut had_unknown = false;
        let mut keyword = Vec::new();
        for arg in args {
            let key: &'static str = match &arg.key {
                None => {
                    if seen_keyword {
                        // Name it: the first parameter not given yet, in
                        // the schema's order.
                        let given: Vec<&str> = args
                            .iter()
                            .filter_map(|a| a.key.as_ref().map(|k| k.to_string()))
                            .map(|k| {
                                def.args
                                    .iter()
                                    .find(|a| a.name == k || a.aliases.contains(&k.as_str()))
                                    .map_or("", |a| a.name)
                            })
                            .chain(positional[..next_positional].iter().copied())
                            .collect();
                        let free = positional
                            .iter()
                            .skip(next_positional)
                            .chain(keys.iter())
                            .find(|k| {
                                !given.contains(k)
                                    && def
                                        .args
                                        .iter()
                                        .any(|a| a.name == **k && fits(&a.kind, &arg.value))
                            });
                        let help = match free {
                            Some(k) => format!("\nhelp: name it: write `{k} = {}`", arg.value),
                            None => String::new(),
                        };
                        cx.error(
                            arg.span,
                            format!("a positional argument cannot follow a keyword argument{help}"),
                        );
                        continue;
                    }
                    let Some(k) = positional.get(next_positional) else {
                        let msg = if keys.is_empty() {
                            format!("`{op}` takes no arguments\nhelp: remove `{}`", arg.value)
                        } else if positional.is_empty() {
                            format!(
                                "`{op}` takes no positional arguments (only {})\nhelp: remove `{}`",
                                keys.iter()
                                    .map(|k| format!("`{k} = ..`"))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                arg.value
                            )
                        } else {
                            // Name it as the next parameter in the schema's
                            // order (PyTorch's: stride after kernel).
                            let given: Vec<String> = args
                                .iter()
                                .filter_map(|a| a.key.as_ref().map(|k| k.to_string()))
                                .collect();
                            let surplus = args
                                .iter()
                                .filter(|a| a.key.is_none())
                                .position(|a| std::ptr::eq(a, arg))
                                .unwrap_or(positional.len())
                                - positional.len();
                            let next = def
                                .args
                                .iter()
                                .filter(|a| fits(&a.kind, &arg.value))
                                .map(|a| a.name)
                                .filter(|k| {
                                    !positional.contains(k) && !given.iter().any(|g| g == k)
                                })
                                .nth(surplus);
                            let help = match next {
                                Some(k) => format!("\nhelp: write `{k} = {}`", arg.value),
                                None => String::new(),
                            };
                            format!(
                                "`{op}` takes at most {} positional argument{} ({}); name the others{help}",
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
                    let by_meaning = keys
                        .iter()
                        .copied()
                        .find(|key| key.contains(written.as_str()) || written.contains(key));
                    let spec = def
                        .args
                        .iter()
                        .find(|a| a.name == written || a.aliases.contains(&written.as_str()));
                    match spec {
                        Some(spec) => spec.name,
                        None => {
                            let hint =
                                match did_you_mean(&written, keys.iter().copied()).or(by_meaning) {
                                    Some(s) => format!("\nhelp: did you mean `{s}`?"),
                                    None if keys.is_empty() => String::new(),
                                    None => format!(
                                        "\nhelp: remove `{written}`: `{op}` takes {}",
                                        keys.join(", ")
                                    ),
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
                let written = match &arg.key {
                    Some(k) => format!("{k} = {}", arg.value),
                    None => arg.value.to_string(),
                };
                cx.error(
                    arg.span,
                    format!(
                        "duplicate argument `{key}` for `{op}`\nhelp: give each argument once: remove `{written}`"
                    ),
                );
                continue;
            }
            if arg.key.is_some() {
                keyword.push(key);
            }
            values.insert(key, &arg.value);
        }
        Self {
            cx,
            op,
            whole,
            values,
            had_unknown,
            known: Vec::new(),
            keyword,
        }
    }

    /// The edit that writes `value` for `v`: `key = value` when `v` is the
    /// whole argument written by keyword, else just the value (a positional
    /// argument, or one item of a tuple).
    pub fn edit(&self, key: &str, v: &Value, value: impl std::fmt::Display) -> String {
        let whole = self.get(key).is_some_and(|w| std::ptr::eq(w, v));
        if whole && self.keyword.contains(&key) {
            format!("`{key} = {value}`")
        } else {
            format!("`{value}`")
        }
    }

    /// Reports a missing required argument, unless a misspelt one was
    /// reported already.
    pub fn missing(&self, message: impl Into<String>) {
        if !self.had_unknown {
            self.cx.error(self.whole, message);
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.values.get(key).copied()
    }

    /// An argument that names a tensor bound earlier (`memory = enc`,
    /// `lengths = lens`): `Some(None)` when absent, `None` after an error.
    /// `what` describes the tensor for the message.
    pub fn tensor(&self, key: &str, what: &str) -> Option<Option<proc_macro2::Ident>> {
        match self.get(key) {
            None => Some(None),
            Some(Value::Ident(i)) => Some(Some(i.clone())),
            Some(other) => {
                self.cx.error(
                    other.span(),
                    format!(
                        "`{key}` names {what} bound earlier (a `let` or a network input), found {}",
                        other.kind()
                    ),
                );
                None
            }
        }
    }

    pub fn wrong_kind(&self, key: &str, want: &str, v: &Value) {
        let msg = match v {
            Value::Ident(i) if i == "same" || i == "valid" => format!(
                "`{i}` is only valid for `padding`; `{key}` of `{}` takes {want}{}",
                self.op,
                self.kind_fix(key, want, v)
                    .map(|f| format!("\nhelp: write {f}"))
                    .unwrap_or_default()
            ),
            // Bound names were put in already: this one is bound nowhere.
            Value::Ident(i) => {
                let bound = if self.known.is_empty() {
                    "no name stands for a number here".to_string()
                } else {
                    format!(
                        "the names that stand for numbers here are {}",
                        self.known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                // The names in scope, and the words this argument takes.
                let words: &[&str] = if want.contains("`same`") {
                    &["same", "valid"]
                } else {
                    &[]
                };
                let hint = match did_you_mean(
                    &i.to_string(),
                    self.known
                        .iter()
                        .map(String::as_str)
                        .chain(words.iter().copied()),
                ) {
                    Some(s) => format!("did you mean `{s}`? ({bound})"),
                    None => format!("write a number; {bound}"),
                };
                format!(
                    "`{i}` is bound nowhere, but `{key}` of `{}` needs {want} known at compile time\nhelp: {hint}",
                    self.op
                )
            }
            _ => {
                let fix = self
                    .kind_fix(key, want, v)
                    .map(|f| format!("\nhelp: write {f}"))
                    .unwrap_or_default();
                format!(
                    "`{key}` of `{}` takes {want}, found {}{fix}",
                    self.op,
                    v.kind()
                )
            }
        };
        self.cx.error(v.span(), msg);
    }

    /// The value of the wanted kind nearest to what was written: a float
    /// rounded, a flag as 0 or 1, an integer as a flag, a tuple cut to a
    /// pair. `None` where nothing written says what was meant.
    fn kind_fix(&self, key: &str, want: &str, v: &Value) -> Option<String> {
        let integer = want.contains("integer");
        let value = match v {
            Value::Float(x, _) if integer => format!("{}", x.round().max(1.0) as u64),
            Value::Bool(b, _) if integer => format!("{}", u64::from(*b)),
            Value::Ident(i) if integer && (i == "same" || i == "valid") => {
                if key == "kernel" { "3" } else { "1" }.to_string()
            }
            Value::Int(n, _) if want.contains("`true`") => format!("{}", *n != 0),
            Value::Tuple(items, _) if want.contains("`(h, w)`") && items.len() > 2 => {
                format!("({}, {})", items[0], items[1])
            }
            Value::Tuple(items, _) if want.contains("`(h, w)`") && items.len() == 1 => {
                format!("{}", items[0])
            }
            _ => return None,
        };
        Some(self.edit(key, v, value))
    }

    /// A non-negative integer >= `min`.
    pub fn uint_value(&self, key: &str, min: u64, v: &Value) -> Option<u64> {
        match v {
            Value::Int(n, s) if *n < 0 => {
                let fix = self.edit(key, v, min);
                self.cx.error(
                    *s,
                    format!("`{key}` cannot be negative, found {n}\nhelp: write {fix}"),
                );
                None
            }
            Value::Int(n, s) if (*n as u64) < min => {
                let fix = self.edit(key, v, min);
                self.cx.error(
                    *s,
                    format!("`{key}` must be at least {min}, found {n}\nhelp: write {fix}"),
                );
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
    pub fn uint(&self, key: &str, min: u64, default: Option<u64>) -> Option<Option<Spanned<u64>>> {
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

    pub fn uint_or(&self, key: &str, min: u64, default: u64) -> Option<Spanned<u64>> {
        let v = self.uint(key, min, Some(default))?;
        Some(v.unwrap_or(Spanned {
            value: default,
            span: self.whole,
            written: false,
        }))
    }

    pub fn pair_or(&self, key: &str, min: u64, default: (u64, u64)) -> Option<Spanned<(u64, u64)>> {
        let v = self.pair(key, min, Some(default))?;
        Some(v.unwrap_or(Spanned {
            value: default,
            span: self.whole,
            written: false,
        }))
    }

    /// An integer or an `(h, w)` pair of integers >= `min`.
    pub fn pair(
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

    pub fn int(&self, key: &str, default: Option<i64>) -> Option<Spanned<i64>> {
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

    /// A number in `[lo, hi]` (`lo` excluded unless `lo_inclusive`);
    /// integers are accepted.
    pub fn float(
        &self,
        key: &str,
        default: f64,
        lo: f64,
        hi: f64,
        lo_inclusive: bool,
    ) -> Option<Spanned<f64>> {
        let Some(v) = self.get(key) else {
            return Some(Spanned {
                value: default,
                span: self.whole,
                written: false,
            });
        };
        let x = match v {
            Value::Float(x, _) => *x,
            Value::Int(n, _) => *n as f64,
            other => {
                self.wrong_kind(key, "a number", other);
                return None;
            }
        };
        let above = if lo_inclusive { x >= lo } else { x > lo };
        if !(above && x <= hi) {
            let range = match (lo_inclusive, hi.is_finite()) {
                (true, true) => format!("in [{lo}, {hi}]"),
                (false, true) => format!("in ({lo}, {hi}]"),
                (true, false) => format!("at least {lo}"),
                (false, false) => format!("greater than {lo}"),
            };
            // The default when it is in range (PyTorch's value), else the
            // nearest bound that is.
            let in_range = |d: f64| (if lo_inclusive { d >= lo } else { d > lo }) && d <= hi;
            let fix = if in_range(default) {
                format!("{}, the default", self.edit(key, v, Float(default)))
            } else if x > hi {
                self.edit(key, v, Float(hi))
            } else if lo_inclusive {
                self.edit(key, v, Float(lo))
            } else {
                self.edit(key, v, Float(lo + 1.0))
            };
            self.cx.error(
                v.span(),
                format!(
                    "`{key}` of `{}` must be {range}, found {x}\nhelp: write {fix}",
                    self.op
                ),
            );
            return None;
        }
        Some(Spanned {
            value: x,
            span: v.span(),
            written: true,
        })
    }

    pub fn boolean(&self, key: &str, default: bool) -> Option<bool> {
        match self.get(key) {
            None => Some(default),
            Some(Value::Bool(b, _)) => Some(*b),
            Some(other) => {
                self.wrong_kind(key, "`true` or `false`", other);
                None
            }
        }
    }

    /// `init = default | kaiming_uniform | kaiming_normal | xavier_uniform | xavier_normal`.
    pub fn weight_init(&self) -> Option<WeightInit> {
        let Some(v) = self.get("init") else {
            return Some(WeightInit::Default);
        };
        let schemes = [
            ("default", WeightInit::Default),
            ("kaiming_uniform", WeightInit::KaimingUniform),
            ("kaiming_normal", WeightInit::KaimingNormal),
            ("xavier_uniform", WeightInit::XavierUniform),
            ("xavier_normal", WeightInit::XavierNormal),
        ];
        if let Value::Ident(i) = v {
            if let Some((_, w)) = schemes.iter().find(|(n, _)| i == n) {
                return Some(*w);
            }
        }
        let names: Vec<&str> = schemes.iter().map(|(n, _)| *n).collect();
        let hint = match v {
            Value::Ident(i) => did_you_mean(&i.to_string(), names.iter().copied())
                .map(|s| format!("\nhelp: did you mean `{s}`?"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        self.cx.error(
            v.span(),
            format!(
                "`init` of `{}` is one of {}, found `{v}`{hint}",
                self.op,
                names.join(", ")
            ),
        );
        None
    }

    /// `out` or `in -> out` (in and out both >= 1).
    #[allow(clippy::type_complexity)]
    pub fn channels(&self, key: &str) -> Option<(Option<Spanned<u64>>, Spanned<u64>)> {
        let spanned = |value, v: &Value| Spanned {
            value,
            span: v.span(),
            written: true,
        };
        match self.get(key) {
            None => {
                self.missing(format!(
                    "`{}` needs its output size as the first argument\nhelp: write `{}(16)` (16 or the size you want)",
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
    pub fn padding(&self) -> Option<Spanned<Padding>> {
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
