//! Fixed-kernel image filters, per channel: `MeanFilter`, `Gaussian`,
//! `Sobel` (and the gradient magnitude), `Laplacian`, `Impulse`, `Shift`,
//! a constant `Filter` kernel, and the non-linear `Median`. They have no
//! parameters: the compiler computes every kernel's values, finds the
//! rank-one ones (`col ⊗ row`), and the `filter_lowering` pass picks how
//! each runs by a cost model over the known sizes ([`choose`]).

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use crate::ast::{Layer, Value};
use crate::diag::SpanRange;
use crate::emit::usize_lit;
use crate::infer::FailKind;
use crate::infer::{Step, StepResult};
use crate::lower::StepOp;
use crate::ops::args::Args;
use crate::ops::{pair_tokens, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, Macs, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::Dim;

/// How the input is extended past its edges (the runtime's `Border`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Border {
    Zeros,
    Reflect,
    Symmetric,
    Replicate,
    Circular,
}

const BORDERS: &[(&str, Border)] = &[
    ("zeros", Border::Zeros),
    ("reflect", Border::Reflect),
    ("symmetric", Border::Symmetric),
    ("replicate", Border::Replicate),
    ("circular", Border::Circular),
];

impl Border {
    pub fn name(self) -> &'static str {
        BORDERS
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("?", |(n, _)| n)
    }
}

/// How a linear filter runs (the runtime's `Lowering`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lowering {
    /// One depthwise convolution with the whole kernel.
    Direct,
    /// Two 1-D depthwise convolutions (rank-one kernels).
    Separable,
    /// Two banded matrix products (rank-one kernels).
    Banded,
    /// A crop of the padded input (a kernel with one non-zero tap).
    Tap,
    /// The convolution theorem: the padded input and the kernel multiplied
    /// in the frequency domain (any kernel).
    Fft,
}

const LOWERINGS: &[(&str, Lowering)] = &[
    ("direct", Lowering::Direct),
    ("separable", Lowering::Separable),
    ("banded", Lowering::Banded),
    ("tap", Lowering::Tap),
    ("fft", Lowering::Fft),
];

impl Lowering {
    pub fn name(self) -> &'static str {
        LOWERINGS
            .iter()
            .find(|(_, l)| *l == self)
            .map_or("?", |(n, _)| n)
    }
}

/// A kernel's values, row-major, as `conv2d` applies them (not flipped).
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub kh: u64,
    pub kw: u64,
    pub values: Vec<f64>,
    /// `values = col ⊗ row`, when the kernel is rank one.
    pub factors: Option<(Vec<f64>, Vec<f64>)>,
    /// The only non-zero tap, `(t, s)`, when there is one.
    pub tap: Option<(u64, u64)>,
}

impl Kernel {
    pub fn new(kh: u64, kw: u64, values: Vec<f64>) -> Self {
        let factors = rank_one(kh as usize, kw as usize, &values);
        let nonzero: Vec<usize> = (0..values.len()).filter(|&i| values[i] != 0.0).collect();
        let tap = match nonzero.as_slice() {
            [i] => Some(((*i as u64) / kw, (*i as u64) % kw)),
            _ => None,
        };
        Kernel {
            kh,
            kw,
            values,
            factors,
            tap,
        }
    }

    /// What the lowerings that need a property of the kernel say about it.
    fn allows(&self, l: Lowering) -> bool {
        match l {
            Lowering::Direct | Lowering::Fft => true,
            Lowering::Separable | Lowering::Banded => self.factors.is_some(),
            Lowering::Tap => self.tap.is_some(),
        }
    }
}

/// `k = col ⊗ row` when `k` is rank one (to 1e-9 of its largest value):
/// the column and row through its largest entry, scaled so integer kernels
/// keep integer factors with a positive column pivot, and other kernels
/// have factors of equal size (a Gaussian's are its 1-D kernel).
pub fn rank_one(kh: usize, kw: usize, k: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    let (mut p, mut big) = (0, 0.0f64);
    for (i, v) in k.iter().enumerate() {
        if v.abs() > big {
            (p, big) = (i, v.abs());
        }
    }
    if big == 0.0 {
        return Some((vec![0.0; kh], vec![0.0; kw]));
    }
    let (pr, pc) = (p / kw, p % kw);
    let pivot = k[p];
    let mut col: Vec<f64> = (0..kh).map(|t| k[t * kw + pc]).collect();
    let mut row: Vec<f64> = (0..kw).map(|s| k[pr * kw + s] / pivot).collect();
    for t in 0..kh {
        for s in 0..kw {
            if (col[t] * row[s] - k[t * kw + s]).abs() > 1e-9 * big {
                return None;
            }
        }
    }
    let integer = k.iter().all(|v| v.fract() == 0.0);
    if integer {
        if pivot < 0.0 {
            col.iter_mut().for_each(|v| *v = -*v);
            row.iter_mut().for_each(|v| *v = -*v);
        }
    } else {
        let (sc, sr) = (
            col.iter().map(|v| v.abs()).sum::<f64>(),
            row.iter().map(|v| v.abs()).sum::<f64>(),
        );
        let f = (sr / sc).sqrt();
        col.iter_mut().for_each(|v| *v *= f);
        row.iter_mut().for_each(|v| *v /= f);
    }
    Some((col, row))
}

/// Which filter, for the summary.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterKind {
    Mean,
    Gaussian { sigma: f64 },
    Sobel { axis: &'static str },
    Laplacian,
    Impulse,
    Shift { dy: i64, dx: i64 },
    Median,
    Custom,
}

#[derive(Clone, Debug)]
pub struct Filter {
    pub kind: FilterKind,
    /// One kernel; two (x, then y) for the Sobel magnitude; none for the
    /// median.
    pub kernels: Vec<Kernel>,
    /// `(kh, kw)`, at the argument that sets it.
    pub size: Spanned<(u64, u64)>,
    pub border: Border,
    /// `padding = same` (true) or `valid`.
    pub same: bool,
    /// `lowering = ..`; `None`: chosen by the cost model.
    pub forced: Option<Spanned<Lowering>>,
}

const BORDER: ArgSpec = ArgSpec::new(
    "border",
    ArgKind::Choice(&["zeros", "reflect", "symmetric", "replicate", "circular"]),
    Some("reflect"),
    "how the input extends past its edges: `reflect` mirrors without repeating the edge (PyTorch's), \
     `symmetric` repeats it (SciPy's `reflect`)",
)
.aka(&["mode", "padding_mode"]);
const PADDING: ArgSpec = ArgSpec::new(
    "padding",
    ArgKind::Choice(&["same", "valid"]),
    Some("same"),
    "`same` keeps H and W (the border fills the rest); `valid` only keeps windows inside the input",
);
const LOWERING: ArgSpec = ArgSpec::new(
    "lowering",
    ArgKind::Choice(&["auto", "direct", "separable", "banded", "tap", "fft"]),
    Some("auto"),
    "how it runs: `auto` lets the cost model choose; the others force one",
);

const SIZE_K: ArgSpec = ArgSpec::new(
    "size",
    ArgKind::Pair,
    None,
    "the window, odd: `k` or `(kh, kw)`",
)
.aka(&["kernel", "kernel_size", "k"]);

pub const MEAN_FILTER: OpDef = OpDef {
    name: "MeanFilter",
    spellings: &["MeanFilter", "mean_filter", "box_filter"],
    aliases: &[],
    positional: &["size"],
    args: &[SIZE_K, BORDER, PADDING, LOWERING],
    resolve: resolve_mean,
};

pub const GAUSSIAN: OpDef = OpDef {
    name: "Gaussian",
    spellings: &["Gaussian", "gaussian", "gaussian_blur"],
    aliases: &[],
    positional: &["sigma"],
    args: &[
        ArgSpec::new(
            "sigma",
            ArgKind::Number,
            None,
            "the standard deviation in pixels, > 0",
        ),
        ArgSpec::new(
            "size",
            ArgKind::Pair,
            Some("2 * floor(4 * sigma + 0.5) + 1"),
            "the window, odd (SciPy's `radius = (size - 1) / 2`, its default `truncate = 4`)",
        )
        .aka(&["kernel", "kernel_size"]),
        BORDER,
        PADDING,
        LOWERING,
    ],
    resolve: resolve_gaussian,
};

pub const SOBEL: OpDef = OpDef {
    name: "Sobel",
    spellings: &["Sobel", "sobel"],
    aliases: &[],
    positional: &["axis"],
    args: &[
        ArgSpec::new(
            "axis",
            ArgKind::Choice(&["x", "y", "magnitude"]),
            None,
            "`x`: d/dW, `y`: d/dH, `magnitude`: `sqrt(x² + y²)`",
        ),
        BORDER,
        PADDING,
        LOWERING,
    ],
    resolve: resolve_sobel,
};

pub const LAPLACIAN: OpDef = OpDef {
    name: "Laplacian",
    spellings: &["Laplacian", "laplacian"],
    aliases: &[],
    positional: &[],
    args: &[BORDER, PADDING, LOWERING],
    resolve: resolve_laplacian,
};

pub const IMPULSE: OpDef = OpDef {
    name: "Impulse",
    spellings: &["Impulse", "impulse"],
    aliases: &[],
    positional: &["size"],
    args: &[
        ArgSpec::new(
            "size",
            ArgKind::Pair,
            Some("3"),
            "the window, odd; 1 at its centre",
        )
        .aka(&["kernel", "kernel_size"]),
        BORDER,
        PADDING,
        LOWERING,
    ],
    resolve: resolve_impulse,
};

pub const SHIFT: OpDef = OpDef {
    name: "Shift",
    spellings: &["Shift", "shift"],
    aliases: &[],
    positional: &["dy", "dx"],
    args: &[
        ArgSpec::new(
            "dy",
            ArgKind::Int,
            Some("0"),
            "rows down: `y[i, j] = x[i - dy, j - dx]`",
        ),
        ArgSpec::new("dx", ArgKind::Int, Some("0"), "columns right"),
        BORDER,
        PADDING,
        LOWERING,
    ],
    resolve: resolve_shift,
};

pub const MEDIAN: OpDef = OpDef {
    name: "Median",
    spellings: &["Median", "median", "median_filter", "MedianFilter"],
    aliases: &[],
    positional: &["size"],
    args: &[SIZE_K, BORDER, PADDING],
    resolve: resolve_median,
};

pub const FILTER: OpDef = OpDef {
    name: "Filter",
    spellings: &["Filter", "filter"],
    aliases: &[],
    positional: &["kernel"],
    args: &[
        ArgSpec::new(
            "kernel",
            ArgKind::Number,
            None,
            "the kernel's rows, `((1, 2, 1), (0, 0, 0), (-1, -2, -1))`, applied as `conv2d` applies one",
        ),
        BORDER,
        PADDING,
        LOWERING,
    ],
    resolve: resolve_filter,
};

/// `key = name` among `names`; `Some(None)` when absent.
fn choice<T: Copy>(a: &Args, key: &str, names: &[(&str, T)]) -> Option<Option<Spanned<T>>> {
    let Some(v) = a.get(key) else {
        return Some(None);
    };
    if let Value::Ident(i) = v {
        if let Some((_, t)) = names.iter().find(|(n, _)| i == n) {
            return Some(Some(Spanned {
                value: *t,
                span: v.span(),
                written: true,
            }));
        }
    }
    let list: Vec<String> = names.iter().map(|(n, _)| format!("`{n}`")).collect();
    let hint = match v {
        Value::Ident(i) => crate::diag::did_you_mean(&i.to_string(), names.iter().map(|(n, _)| *n))
            .map(|s| format!("\nhelp: did you mean `{s}`?"))
            .unwrap_or_else(|| format!("\nhelp: write {}", a.edit(key, v, names[0].0))),
        _ => format!("\nhelp: write {}", a.edit(key, v, names[0].0)),
    };
    a.cx.error(
        v.span(),
        format!(
            "`{key}` of `{}` is one of {}, found `{v}`{hint}",
            a.op,
            list.join(", ")
        ),
    );
    None
}

/// The arguments every linear filter shares: border, padding, lowering.
struct Common {
    border: Border,
    same: bool,
    forced: Option<Spanned<Lowering>>,
}

fn common(a: &Args, linear: bool) -> Option<Common> {
    let border = choice(a, "border", BORDERS);
    let same = choice(a, "padding", &[("same", true), ("valid", false)]);
    let forced = if linear {
        choice(
            a,
            "lowering",
            &[
                ("auto", None),
                ("direct", Some(Lowering::Direct)),
                ("separable", Some(Lowering::Separable)),
                ("banded", Some(Lowering::Banded)),
                ("tap", Some(Lowering::Tap)),
                ("fft", Some(Lowering::Fft)),
            ],
        )
    } else {
        Some(None)
    };
    let forced = forced?.and_then(|s| {
        s.value.map(|value| Spanned {
            value,
            span: s.span,
            written: true,
        })
    });
    Some(Common {
        border: border?.map_or(Border::Reflect, |s| s.value),
        same: same?.is_none_or(|s| s.value),
        forced,
    })
}

/// An odd `(kh, kw)` for a centred window, or an error with the two odd
/// sizes around an even one.
fn odd_size(
    a: &Args,
    key: &str,
    default: Option<(u64, u64)>,
    what: &str,
) -> Option<Spanned<(u64, u64)>> {
    let Some(size) = a.pair(key, 1, default)? else {
        a.missing(format!("`{}` needs its size, e.g. `{}(3)`", a.op, a.op));
        return None;
    };
    let (kh, kw) = size.value;
    if kh % 2 == 0 || kw % 2 == 0 {
        let fix = |k: u64| {
            if k.is_multiple_of(2) {
                (k - 1, k + 1)
            } else {
                (k, k)
            }
        };
        let ((h1, h2), (w1, w2)) = (fix(kh), fix(kw));
        let write = |h: u64, w: u64| {
            if h == w {
                format!("{}({h})", what)
            } else {
                format!("{}(({h}, {w}))", what)
            }
        };
        let shown = if kh == kw {
            kh.to_string()
        } else {
            format!("({kh}, {kw})")
        };
        a.cx.error(
            size.span,
            format!(
                "`{}` needs an odd size, to centre its window on each pixel, but {key} is {shown}\n\
                 help: `{}` or `{}`",
                a.op,
                write(h1.max(1), w1.max(1)),
                write(h2, w2)
            ),
        );
        return None;
    }
    Some(size)
}

fn linear(
    a: &Args,
    kind: FilterKind,
    size: Spanned<(u64, u64)>,
    kernels: Vec<Kernel>,
) -> Option<Op> {
    let c = common(a, true)?;
    let f = Filter {
        kind,
        kernels,
        size,
        border: c.border,
        same: c.same,
        forced: c.forced,
    };
    if let Some(l) = f.forced {
        if let Some(k) = f.kernels.iter().find(|k| !k.allows(l.value)) {
            let why = match l.value {
                Lowering::Tap => "a kernel with a single non-zero tap".to_string(),
                _ => "a rank-one kernel (`col ⊗ row`)".to_string(),
            };
            let can: Vec<&str> = LOWERINGS
                .iter()
                .filter(|(_, x)| k.allows(*x))
                .map(|(n, _)| *n)
                .collect();
            a.cx.error(
                l.span,
                format!(
                    "`lowering = {}` needs {why}, but the {} x {} kernel of `{}` is not one\n\
                     help: `lowering = {}`, or leave `lowering` out to let the cost model choose",
                    l.value.name(),
                    k.kh,
                    k.kw,
                    a.op,
                    can.join("` or `lowering = ")
                ),
            );
            return None;
        }
    }
    Some(Op::Filter(Box::new(f)))
}

fn resolve_mean(a: &Args, _layer: &Layer) -> Option<Op> {
    let size = odd_size(a, "size", None, "MeanFilter")?;
    let (kh, kw) = size.value;
    let v = 1.0 / (kh * kw) as f64;
    let k = Kernel::new(kh, kw, vec![v; (kh * kw) as usize]);
    linear(a, FilterKind::Mean, size, vec![k])
}

/// The normalised 1-D Gaussian of `radius`: SciPy's `_gaussian_kernel1d`,
/// `exp(-x² / (2 sigma²))` over `x = -radius..=radius`, divided by its sum.
pub fn gaussian_1d(sigma: f64, radius: u64) -> Vec<f64> {
    let r = radius as i64;
    let v: Vec<f64> = (-r..=r)
        .map(|x| (-0.5 * (x * x) as f64 / (sigma * sigma)).exp())
        .collect();
    let s: f64 = v.iter().sum();
    v.into_iter().map(|x| x / s).collect()
}

/// SciPy's default radius, `floor(4 * sigma + 0.5)` (`truncate = 4`).
pub fn gaussian_radius(sigma: f64) -> u64 {
    (4.0 * sigma + 0.5).floor() as u64
}

fn resolve_gaussian(a: &Args, _layer: &Layer) -> Option<Op> {
    let Some(v) = a.get("sigma") else {
        a.missing("`Gaussian` needs its `sigma`, e.g. `Gaussian(2.0)`");
        return None;
    };
    let sigma = match v {
        Value::Float(x, _) => Some(*x),
        Value::Int(n, _) => Some(*n as f64),
        other => {
            a.wrong_kind("sigma", "a number", other);
            None
        }
    };
    let sigma = match sigma {
        Some(s) if s > 0.0 && s.is_finite() => Some(s),
        Some(s) => {
            let fix = if s < 0.0 {
                let r = gaussian_radius(-s);
                format!(
                    "help: write {}: the spread (a {} x {} kernel); a negative sigma has no meaning",
                    a.edit("sigma", v, format!("{:?}", -s)),
                    2 * r + 1,
                    2 * r + 1
                )
            } else {
                format!(
                    "help: write {}: it blurs over a 9 x 9 kernel; for no blur at all, `Impulse`",
                    a.edit("sigma", v, "1.0")
                )
            };
            a.cx.error(
                v.span(),
                format!("`sigma` of `Gaussian` must be greater than 0, found {s:?}\n{fix}"),
            );
            None
        }
        None => None,
    };
    let default = sigma.map(|s| {
        let n = 2 * gaussian_radius(s) + 1;
        (n, n)
    });
    let size = odd_size(a, "size", default.or(Some((1, 1))), "Gaussian");
    let (sigma, size) = (sigma?, size?);
    let (kh, kw) = size.value;
    let (col, row) = (gaussian_1d(sigma, kh / 2), gaussian_1d(sigma, kw / 2));
    let values = col
        .iter()
        .flat_map(|c| row.iter().map(move |r| c * r))
        .collect();
    let k = Kernel::new(kh, kw, values);
    linear(a, FilterKind::Gaussian { sigma }, size, vec![k])
}

fn sobel_kernel(x: bool) -> Kernel {
    let v = if x {
        vec![-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0]
    } else {
        vec![-1.0, -2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0]
    };
    Kernel::new(3, 3, v)
}

fn fixed_size(a: &Args) -> Spanned<(u64, u64)> {
    Spanned {
        value: (3, 3),
        span: a.whole,
        written: false,
    }
}

fn resolve_sobel(a: &Args, _layer: &Layer) -> Option<Op> {
    let axis = choice(
        a,
        "axis",
        &[("x", "x"), ("y", "y"), ("magnitude", "magnitude")],
    )?;
    let Some(axis) = axis else {
        a.missing(
            "`Sobel` needs its axis: `Sobel(x)` (d/dW), `Sobel(y)` (d/dH) or `Sobel(magnitude)`",
        );
        return None;
    };
    let kernels = match axis.value {
        "x" => vec![sobel_kernel(true)],
        "y" => vec![sobel_kernel(false)],
        _ => vec![sobel_kernel(true), sobel_kernel(false)],
    };
    linear(
        a,
        FilterKind::Sobel { axis: axis.value },
        fixed_size(a),
        kernels,
    )
}

fn resolve_laplacian(a: &Args, _layer: &Layer) -> Option<Op> {
    let k = Kernel::new(3, 3, vec![0.0, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0]);
    linear(a, FilterKind::Laplacian, fixed_size(a), vec![k])
}

fn resolve_impulse(a: &Args, _layer: &Layer) -> Option<Op> {
    let size = odd_size(a, "size", Some((3, 3)), "Impulse")?;
    let (kh, kw) = size.value;
    let mut v = vec![0.0; (kh * kw) as usize];
    v[((kh / 2) * kw + kw / 2) as usize] = 1.0;
    linear(a, FilterKind::Impulse, size, vec![Kernel::new(kh, kw, v)])
}

fn resolve_shift(a: &Args, _layer: &Layer) -> Option<Op> {
    let dy = a.int("dy", Some(0));
    let dx = a.int("dx", Some(0));
    let (dy, dx) = (dy?, dx?);
    let span = if dy.written { dy.span } else { dx.span };
    // y[i, j] = x[i - dy, j - dx]: as a correlation centred at (ry, rx),
    // the tap at (ry - dy, rx - dx).
    let (ry, rx) = (dy.value.unsigned_abs(), dx.value.unsigned_abs());
    let (kh, kw) = (2 * ry + 1, 2 * rx + 1);
    let mut v = vec![0.0; (kh * kw) as usize];
    let (t, s) = ((ry as i64 - dy.value) as u64, (rx as i64 - dx.value) as u64);
    v[(t * kw + s) as usize] = 1.0;
    let size = Spanned {
        value: (kh, kw),
        span,
        written: dy.written || dx.written,
    };
    linear(
        a,
        FilterKind::Shift {
            dy: dy.value,
            dx: dx.value,
        },
        size,
        vec![Kernel::new(kh, kw, v)],
    )
}

fn resolve_median(a: &Args, _layer: &Layer) -> Option<Op> {
    let size = odd_size(a, "size", None, "Median");
    let c = common(a, false);
    let (size, c) = (size?, c?);
    Some(Op::Filter(Box::new(Filter {
        kind: FilterKind::Median,
        kernels: Vec::new(),
        size,
        border: c.border,
        same: c.same,
        forced: None,
    })))
}

fn resolve_filter(a: &Args, _layer: &Layer) -> Option<Op> {
    let Some(v) = a.get("kernel") else {
        a.missing("`Filter` needs its kernel, e.g. `Filter(((0, 1, 0), (1, -4, 1), (0, 1, 0)))`");
        return None;
    };
    let number = |x: &Value| match x {
        Value::Int(n, _) => Some(*n as f64),
        Value::Float(f, _) => Some(*f),
        _ => None,
    };
    // Rows: a tuple of tuples, or one tuple (a single row).
    let rows: Vec<&Value> = match v {
        Value::Tuple(items, _) if items.iter().all(|i| matches!(i, Value::Tuple(..))) => {
            items.iter().collect()
        }
        Value::Tuple(..) => vec![v],
        other => {
            a.wrong_kind(
                "kernel",
                "a tuple of rows of numbers, `((1, 2, 1), (0, 0, 0), (-1, -2, -1))`",
                other,
            );
            return None;
        }
    };
    let mut values = Vec::new();
    let mut width: Option<(usize, SpanRange)> = None;
    let mut ok = true;
    for (r, row) in rows.iter().enumerate() {
        let Value::Tuple(items, span) = row else {
            continue;
        };
        for item in items {
            match number(item) {
                Some(x) => values.push(x),
                None => {
                    a.wrong_kind("kernel", "numbers", item);
                    ok = false;
                }
            }
        }
        match width {
            None => width = Some((items.len(), *span)),
            Some((w, _)) if w != items.len() => {
                a.cx.error(
                    *span,
                    format!(
                        "row {} of the kernel of `Filter` has {} value{}, but row 1 has {w}: a kernel is a rectangle\n\
                         help: give every row {w} values (padded with 0): write `[{}]`",
                        r + 1,
                        items.len(),
                        if items.len() == 1 { "" } else { "s" },
                        items
                            .iter()
                            .map(|v| v.to_string())
                            .chain(std::iter::repeat("0".to_string()))
                            .take(w)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                ok = false;
            }
            Some(_) => {}
        }
    }
    let kw = width.map_or(0, |(w, _)| w) as u64;
    if ok && kw == 0 {
        a.cx.error(v.span(), "the kernel of `Filter` is empty");
        return None;
    }
    if !ok {
        return None;
    }
    let kh = rows.len() as u64;
    let size = Spanned {
        value: (kh, kw),
        span: v.span(),
        written: true,
    };
    linear(
        a,
        FilterKind::Custom,
        size,
        vec![Kernel::new(kh, kw, values)],
    )
}

impl Filter {
    /// `((top, bottom), (left, right))`: PyTorch's `same` split (the extra
    /// pixel of an even kernel after), or none for `valid`.
    pub fn pad(&self) -> ((u64, u64), (u64, u64)) {
        let (kh, kw) = self.size.value;
        if self.same {
            (((kh - 1) / 2, kh / 2), ((kw - 1) / 2, kw / 2))
        } else {
            ((0, 0), (0, 0))
        }
    }
}

/// `same`: H and W go through. `valid`: `H_out = H - kh + 1`, the same
/// along W; a kernel larger than the input is an error with the fixes.
pub fn infer_filter(cx: &Step, f: &Filter) -> StepResult {
    cx.need_rank(FILTER_NAME, 4, "[B, C, H, W]")?;
    if f.same {
        return Ok((cx.input.clone(), None));
    }
    let (kh, kw) = f.size.value;
    let mut out = cx.input[..2].to_vec();
    let mut lines = Vec::new();
    for (axis, name, k) in [(2usize, "H", kh), (3, "W", kw)] {
        match &cx.input[axis] {
            Dim::Known(n) => {
                let o = *n as i64 - k as i64 + 1;
                let arithmetic = format!("{name} = {n} - {k} + 1 = {o}");
                if o < 1 {
                    let mut fail = cx.fail(
                        FailKind::Other,
                        f.size.span,
                        format!(
                            "`{}` (padding = valid) gives no output along {name}: its kernel spans {k} \
                             but the input is only {n}",
                            cx.name()
                        ),
                    );
                    fail.tail.push(format!("{}: {arithmetic}", cx.name()));
                    let largest = if n % 2 == 1 { *n } else { n - 1 };
                    fail.help.push(format!(
                        "`padding = same` keeps {name} = {n}; or use a kernel of at most {largest} (odd) along {name}"
                    ));
                    return Err(fail);
                }
                lines.push(arithmetic);
                out.push(Dim::Known(o as u64));
            }
            Dim::Lin(l) => {
                let n = l.shift(1 - k as i64);
                let why = cx.why();
                cx.cons.borrow_mut().need_at_least(&n, 1, &why);
                lines.push(format!("{name} = {l} - {k} + 1 = {n}"));
                out.push(Dim::Lin(n));
            }
            s if k == 1 => out.push(s.clone()),
            s => {
                return Err(cx.fail(
                    FailKind::Other,
                    f.size.span,
                    format!(
                        "`{}` (padding = valid) needs a known {name}, but it is `{s}`, which only the input decides\n\
                         help: `padding = same` keeps any size",
                        cx.name()
                    ),
                ))
            }
        }
    }
    let trace = format!("{}: {}", cx.name(), lines.join("; "));
    Ok((out, Some(trace)))
}

const FILTER_NAME: &str = "a filter";

/// What `forward` runs for one filter layer: the kernels as the compiler
/// computed them, and the lowering the `filter_lowering` pass sets.
#[derive(Clone, Debug)]
pub struct FilterStep {
    pub kernels: Vec<Kernel>,
    /// `Median(k)`: its `(kh, kw)` window.
    pub median: Option<(u64, u64)>,
    pub magnitude: bool,
    pub pad: ((u64, u64), (u64, u64)),
    pub border: Border,
    /// What runs: `Direct` until the pass chooses.
    pub lowering: Lowering,
    /// `lowering = ..` as written; `None`: the cost model chooses.
    pub forced: Option<Lowering>,
}

pub fn lower_filter(cx: &LowerCx, f: &Filter) -> Lowered {
    let (kh, kw) = f.size.value;
    let head = match &f.kind {
        FilterKind::Mean => "MeanFilter(".to_string(),
        FilterKind::Gaussian { sigma } => format!("Gaussian(sigma {sigma:?}, "),
        FilterKind::Sobel { axis } => format!("Sobel({axis}, "),
        FilterKind::Laplacian => "Laplacian(".to_string(),
        FilterKind::Impulse => "Impulse(".to_string(),
        FilterKind::Shift { dy, dx } => format!("Shift(dy {dy}, dx {dx}, "),
        FilterKind::Median => "Median(".to_string(),
        FilterKind::Custom => "Filter(".to_string(),
    };
    let mut desc = format!("{head}{kh} x {kw}, {}", f.border.name());
    if !f.same {
        desc += ", valid";
    }
    desc += ")";
    let taps = (kh * kw) * f.kernels.len() as u64;
    let macs = Macs::per_sample(cx.output, taps);
    let step = StepOp::Filter(Box::new(FilterStep {
        kernels: f.kernels.clone(),
        median: (f.kind == FilterKind::Median).then_some((kh, kw)),
        magnitude: f.kernels.len() == 2,
        pad: f.pad(),
        border: f.border,
        lowering: Lowering::Direct,
        forced: f.forced.map(|l| l.value),
    }));
    (desc, step, None, macs)
}

/// The estimated time in microseconds of one lowering of a `kh x kw`
/// kernel over one `h x w` channel giving `oh x ow`, on the CPU.
///
/// The rates are the runtime's, fitted to the timings of every form on the
/// issue's grid (Gaussians of 3 to 61 taps on 64^2 to 2048^2, one channel,
/// 2 threads, on the 2-core development machine: docs/performance.md,
/// "Filters"): per call, per element of the border's extension, per
/// multiply-add of the depthwise loop or of the banded matrix products
/// (only the band's blocks are multiplied), per `n log2 n` of the FFT's
/// `n` points.
pub fn cost_us(
    l: Lowering,
    (kh, kw): (u64, u64),
    (h, w): (u64, u64),
    (oh, ow): (u64, u64),
    border: Border,
) -> f64 {
    let (hp, wp) = (oh + kh - 1, ow + kw - 1);
    let pad = if border == Border::Zeros {
        0.0
    } else {
        DIRECT_PAD_NS * (hp * wp) as f64
    };
    let ns = match l {
        Lowering::Direct => DIRECT_NS + pad + DIRECT_NS_PER_MAC * (oh * ow * kh * kw) as f64,
        // Up to 1024^2 the runtime's own two passes, the border read in
        // place (per element of the two passes' outputs, per multiply-add);
        // above, two depthwise convolutions on a padded copy (the copy's
        // cost fitted to nothing measurable beside the passes).
        Lowering::Separable if h * w <= SEPARABLE_IN_PLACE_MAX => {
            SEPARABLE_NS
                + SEPARABLE_IN_PLACE_NS_PER_ELEMENT * (h * ow + oh * ow) as f64
                + SEPARABLE_IN_PLACE_NS_PER_MAC * (oh * wp * kh + oh * ow * kw) as f64
        }
        Lowering::Separable => {
            SEPARABLE_NS + SEPARABLE_NS_PER_MAC * (oh * wp * kh + oh * ow * kw) as f64
        }
        // A_h [oh, h] · x [h, w] · A_w [w, ow], the border inside the
        // matrices, each block of outputs reading only its band's span.
        Lowering::Banded => {
            let span = |k: u64, n: u64| n.min(band_block(k) + k - 1);
            BANDED_NS + GEMM_NS_PER_MAC * (h * ow * span(kw, w) + oh * ow * span(kh, h)) as f64
        }
        Lowering::Tap => TAP_NS + TAP_NS_PER_ELEMENT * (oh * ow) as f64,
        // The extension is read in place; the transforms of an `fh x fw`
        // plane: rows and columns forward and back.
        Lowering::Fft => {
            let n = (fft_len(hp) * fft_len(wp)) as f64;
            FFT_NS + FFT_NS_PER_POINT_LOG * n * n.log2()
        }
    };
    ns / 1000.0
}

/// The transform size of the runtime's FFT form (shared with it).
pub fn fft_len(n: u64) -> u64 {
    netdsl_summary::fft_len(n as usize) as u64
}

/// The output rows per block of the runtime's banded form (shared with it).
pub fn band_block(k: u64) -> u64 {
    netdsl_summary::band_block(k as usize) as u64
}

// Fitted by `scripts/fit_filter_costs.py` to the release build's timings
// of every form (`scripts/bench_filters.py --forms`, 2026-12-06, the
// 2-core machine, 2 threads): with these rates the cheapest estimate is
// within 10 % of the fastest form measured in all 20 cases of the grid.

/// The direct form: per call, per element of the border's padded copy,
/// and per multiply-add of the depthwise loop.
const DIRECT_NS: f64 = 52_500.0;
const DIRECT_PAD_NS: f64 = 0.42;
const DIRECT_NS_PER_MAC: f64 = 0.077;
/// Two 1-D passes: per call (both), and per multiply-add.
const SEPARABLE_NS: f64 = 36_400.0;
const SEPARABLE_NS_PER_MAC: f64 = 0.056;
/// The runtime's in-place two passes (`h * w` up to this many): per
/// element written, and per multiply-add (AVX2 FMA).
const SEPARABLE_IN_PLACE_MAX: u64 = 1 << 20;
const SEPARABLE_IN_PLACE_NS_PER_ELEMENT: f64 = 1.86;
const SEPARABLE_IN_PLACE_NS_PER_MAC: f64 = 0.0148;
/// The banded products: per call (the fit finds no fixed cost beside the
/// products), and per multiply-add of the blocks.
const BANDED_NS: f64 = 0.0;
const GEMM_NS_PER_MAC: f64 = 0.0439;
/// A crop (read straight from the input): per call, and per output
/// element.
const TAP_NS: f64 = 5_000.0;
const TAP_NS_PER_ELEMENT: f64 = 0.3;
/// The FFT form: per call (plans and kernel spectra are cached), and per
/// `n log2 n` of the transform's `n` points.
const FFT_NS: f64 = 41_300.0;
const FFT_NS_PER_POINT_LOG: f64 = 0.164;

/// The cheapest lowering of `k` for the sizes given (`None` when a size is
/// symbolic: then the fewest multiply-adds), with every candidate's cost.
pub fn choose(
    k: &Kernel,
    sizes: Option<((u64, u64), (u64, u64))>,
    border: Border,
) -> (Lowering, Vec<(Lowering, f64)>) {
    let candidates: Vec<Lowering> = LOWERINGS
        .iter()
        .map(|(_, l)| *l)
        .filter(|l| k.allows(*l))
        .collect();
    let Some((hw, ohw)) = sizes else {
        let best = if k.tap.is_some() {
            Lowering::Tap
        } else if k.factors.is_some() && k.kh * k.kw > k.kh + k.kw {
            Lowering::Separable
        } else {
            Lowering::Direct
        };
        return (best, Vec::new());
    };
    let costs: Vec<(Lowering, f64)> = candidates
        .iter()
        .map(|l| (*l, cost_us(*l, (k.kh, k.kw), hw, ohw, border)))
        .collect();
    let best = costs
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(Lowering::Direct, |c| c.0);
    (best, costs)
}

fn f32_lits(v: &[f64]) -> TokenStream {
    let lits = v.iter().map(|x| Literal::f32_suffixed(*x as f32));
    quote!(&[#(#lits),*])
}

fn spec_tokens(k: &Kernel, s: &FilterStep) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let taps = match (&k.factors, s.lowering) {
        (
            Some((col, row)),
            Lowering::Separable | Lowering::Banded | Lowering::Direct | Lowering::Fft,
        ) if s.lowering != Lowering::Direct || k.kh * k.kw > k.kh + k.kw => {
            let (col, row) = (f32_lits(col), f32_lits(row));
            quote!(#p::Taps::Outer { col: #col, row: #row })
        }
        _ => {
            let v = f32_lits(&k.values);
            quote!(#p::Taps::Full(#v))
        }
    };
    let size = pair_tokens((k.kh, k.kw));
    let pad = {
        let (a, b) = (pair_tokens(s.pad.0), pair_tokens(s.pad.1));
        quote!((#a, #b))
    };
    let border = border_tokens(s.border);
    let lowering = match s.lowering {
        Lowering::Direct => quote!(#p::Lowering::Direct),
        Lowering::Separable => quote!(#p::Lowering::Separable),
        Lowering::Banded => quote!(#p::Lowering::Banded),
        Lowering::Fft => quote!(#p::Lowering::Fft),
        Lowering::Tap => {
            let (t, u) = k.tap.unwrap_or((0, 0));
            let (t, u) = (usize_lit(t), usize_lit(u));
            quote!(#p::Lowering::Tap { t: #t, s: #u })
        }
    };
    quote!(&#p::FilterSpec { taps: #taps, size: #size, pad: #pad, border: #border, lowering: #lowering })
}

fn border_tokens(b: Border) -> TokenStream {
    let p = quote!(::netdsl::__private);
    match b {
        Border::Zeros => quote!(#p::Border::Zeros),
        Border::Reflect => quote!(#p::Border::Reflect),
        Border::Symmetric => quote!(#p::Border::Symmetric),
        Border::Replicate => quote!(#p::Border::Replicate),
        Border::Circular => quote!(#p::Border::Circular),
    }
}

pub fn emit_filter(e: &EmitCx, s: &FilterStep) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x) = (e.src, e.x);
    if let Some(size) = s.median {
        let size = pair_tokens(size);
        let (a, b) = (pair_tokens(s.pad.0), pair_tokens(s.pad.1));
        let border = border_tokens(s.border);
        return quote!(let #x = #p::median2d(&#src, #size, (#a, #b), #border)?;);
    }
    let specs: Vec<TokenStream> = s.kernels.iter().map(|k| spec_tokens(k, s)).collect();
    match specs.as_slice() {
        [gx, gy] if s.magnitude => quote!(
            let #x = #p::gradient_magnitude(&#p::filter2d(&#src, #gx)?, &#p::filter2d(&#src, #gy)?)?;
        ),
        [spec, ..] => quote!(let #x = #p::filter2d(&#src, #spec)?;),
        [] => quote!(let #x = #src.clone();),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_matches_scipy() {
        // scipy.ndimage._filters._gaussian_kernel1d(1.0, 0, 4), by hand:
        // exp(-x²/2) for x = 0..4 is 1, 0.60653066, 0.13533528, 0.011108997,
        // 0.00033546263; the sum over -4..=4 is 2.50662721.
        let g = gaussian_1d(1.0, 4);
        let sum = 1.0 + 2.0 * (0.60653066 + 0.13533528 + 0.011108997 + 0.00033546263);
        assert!((g[4] - 1.0 / sum).abs() < 1e-8);
        assert!((g[0] - 0.00033546263 / sum).abs() < 1e-9);
        assert!((g.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // The default radius: floor(4 sigma + 0.5).
        assert_eq!(gaussian_radius(1.0), 4);
        assert_eq!(gaussian_radius(0.5), 2);
        assert_eq!(gaussian_radius(2.0), 8);
        assert_eq!(gaussian_radius(0.1), 0);
    }

    #[test]
    fn rank_one_factors() {
        // Sobel x = (1, 2, 1)ᵀ ⊗ (-1, 0, 1): integer factors, positive pivot.
        let sobel = [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0];
        let (col, row) = rank_one(3, 3, &sobel).unwrap();
        assert_eq!((col, row), (vec![1.0, 2.0, 1.0], vec![-1.0, 0.0, 1.0]));
        // A mean filter: two equal factors.
        let (col, row) = rank_one(3, 3, &[1.0 / 9.0; 9]).unwrap();
        for v in col.iter().chain(&row) {
            assert!((v - 1.0 / 3.0).abs() < 1e-12);
        }
        // A Gaussian: its 1-D kernel twice.
        let g = gaussian_1d(1.5, 3);
        let k: Vec<f64> = g
            .iter()
            .flat_map(|a| g.iter().map(move |b| a * b))
            .collect();
        let (col, row) = rank_one(7, 7, &k).unwrap();
        for i in 0..7 {
            assert!((col[i] - g[i]).abs() < 1e-12 && (row[i] - g[i]).abs() < 1e-12);
        }
        // The Laplacian is rank two.
        let lap = [0.0, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0];
        assert!(rank_one(3, 3, &lap).is_none());
        // A rectangle: (1, 2)ᵀ ⊗ (3, 0, -1).
        let k = [3.0, 0.0, -1.0, 6.0, 0.0, -2.0];
        let (col, row) = rank_one(2, 3, &k).unwrap();
        for t in 0..2 {
            for s in 0..3 {
                assert_eq!(col[t] * row[s], k[t * 3 + s]);
            }
        }
    }

    #[test]
    fn single_taps() {
        assert_eq!(
            Kernel::new(3, 5, {
                let mut v = vec![0.0; 15];
                v[4] = 1.0;
                v
            })
            .tap,
            Some((0, 4))
        );
        assert_eq!(Kernel::new(3, 3, vec![1.0 / 9.0; 9]).tap, None);
    }

    fn gaussian_kernel(sigma: f64) -> Kernel {
        let r = gaussian_radius(sigma);
        let g = gaussian_1d(sigma, r);
        let n = 2 * r + 1;
        Kernel::new(
            n,
            n,
            g.iter()
                .flat_map(|a| g.iter().map(move |b| a * b))
                .collect(),
        )
    }

    /// The cost model's choices over the grid of sizes. A change
    /// of the constants that flips one of these is a change of behaviour
    /// (the measurements behind them are in docs/performance.md).
    #[test]
    fn the_cost_model_chooses() {
        let pick = |sigma: f64, n: u64, border: Border| {
            let k = gaussian_kernel(sigma);
            choose(&k, Some(((n, n), (n, n))), border).0
        };
        // sigma 0.25: 3 x 3; 1.75: 15 x 15; 3.75: 31 x 31; 7.5: 61 x 61.
        assert_eq!(gaussian_kernel(7.5).kh, 61);
        // On 64 x 64 the banded products (two small matrix multiplies, no
        // padded copy) win at every size of kernel.
        assert_eq!(pick(0.25, 64, Border::Zeros), Lowering::Banded);
        assert_eq!(pick(7.5, 64, Border::Reflect), Lowering::Banded);
        // On 256 and 512: direct for 3 taps, the FFT from 7 (its cost
        // hardly grows with the kernel)...
        assert_eq!(pick(0.25, 256, Border::Reflect), Lowering::Direct);
        assert_eq!(pick(0.25, 512, Border::Reflect), Lowering::Direct);
        assert_eq!(pick(1.75, 256, Border::Reflect), Lowering::Fft);
        assert_eq!(pick(7.5, 256, Border::Reflect), Lowering::Fft);
        assert_eq!(pick(3.75, 512, Border::Reflect), Lowering::Fft);
        assert_eq!(pick(7.5, 512, Border::Reflect), Lowering::Fft);
        // ...on 2048 two 1-D passes up to 31 taps, the FFT for 61.
        assert_eq!(pick(0.25, 2048, Border::Reflect), Lowering::Separable);
        assert_eq!(pick(1.75, 2048, Border::Reflect), Lowering::Separable);
        assert_eq!(pick(3.75, 2048, Border::Reflect), Lowering::Separable);
        assert_eq!(pick(7.5, 2048, Border::Reflect), Lowering::Fft);
        // The Laplacian is not rank one: direct or the FFT, which edges
        // it out at 64 x 64 (46 against 51 us measured); a shift is a crop.
        let lap = Kernel::new(3, 3, vec![0.0, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0]);
        assert_eq!(
            choose(&lap, Some(((64, 64), (64, 64))), Border::Zeros).0,
            Lowering::Fft
        );
        let mut v = vec![0.0; 9];
        v[0] = 1.0;
        let shift = Kernel::new(3, 3, v);
        assert_eq!(
            choose(&shift, Some(((256, 256), (256, 256))), Border::Reflect).0,
            Lowering::Tap
        );
        // On zeros too: the crop reads the input once.
        assert_eq!(
            choose(&shift, Some(((64, 64), (64, 64))), Border::Zeros).0,
            Lowering::Tap
        );
        // A 3 x 3 kernel on 2048 x 2048 runs directly; a wide kernel that is
        // not rank one (a 31 x 31 disk) goes to the FFT from 64 up.
        assert_eq!(
            choose(&lap, Some(((2048, 2048), (2048, 2048))), Border::Reflect).0,
            Lowering::Direct
        );
        let disk: Vec<f64> = (0..31 * 31)
            .map(|i| {
                let (y, x) = ((i / 31) as f64 - 15.0, (i % 31) as f64 - 15.0);
                f64::from(u8::from(x * x + y * y <= 225.0))
            })
            .collect();
        let disk = Kernel::new(31, 31, disk);
        assert!(disk.factors.is_none());
        for n in [64, 512] {
            assert_eq!(
                choose(&disk, Some(((n, n), (n, n))), Border::Reflect).0,
                Lowering::Fft
            );
        }
        // Unknown sizes: the fewest multiply-adds.
        assert_eq!(
            choose(&gaussian_kernel(2.0), None, Border::Zeros).0,
            Lowering::Separable
        );
    }
}
