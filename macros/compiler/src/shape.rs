//! Shapes and the shape rules of every op, written as PyTorch's docs write
//! them. Error messages print the arithmetic these functions return, so what
//! the user reads is the arithmetic that ran.

use std::fmt;

/// One dim of a tensor shape known at compile time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Known(u64),
    /// A symbol of the input shape, scaled and shifted: `H`, `H/2`, `2*H`,
    /// `H/2 - 2`. Exact: a window op over it records the divisibility that
    /// keeps it exact as a [`Constraints`] entry, checked at `forward`'s entry.
    Lin(Lin),
    /// Anything else only the input can decide (`16*H*W`): equal only to itself.
    Sym(String),
}

/// `num/den * sym + off`, with `num/den` in lowest terms and `num > 0`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lin {
    pub sym: String,
    pub num: u64,
    pub den: u64,
    pub off: i64,
}

pub fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Lin {
    pub fn sym(name: impl Into<String>) -> Self {
        Lin {
            sym: name.into(),
            num: 1,
            den: 1,
            off: 0,
        }
    }

    fn reduced(sym: String, num: u64, den: u64, off: i64) -> Self {
        let g = gcd(num, den).max(1);
        Lin {
            sym,
            num: num / g,
            den: den / g,
            off,
        }
    }

    pub fn scale(&self, k: u64) -> Self {
        Self::reduced(
            self.sym.clone(),
            self.num.saturating_mul(k),
            self.den,
            self.off.saturating_mul(k as i64),
        )
    }

    pub fn shift(&self, c: i64) -> Self {
        Lin {
            off: self.off.saturating_add(c),
            ..self.clone()
        }
    }

    /// `self + other`, same symbol.
    pub fn add(&self, other: &Lin) -> Self {
        Self::reduced(
            self.sym.clone(),
            self.num
                .saturating_mul(other.den)
                .saturating_add(other.num.saturating_mul(self.den)),
            self.den.saturating_mul(other.den),
            self.off.saturating_add(other.off),
        )
    }

    /// `self / k` when that is exact for every allowed value of the symbol
    /// (the offset must divide; the symbol's multiple is the caller's).
    pub fn div_exact(&self, k: u64) -> Option<Self> {
        (self.off % k as i64 == 0).then(|| {
            Self::reduced(
                self.sym.clone(),
                self.num,
                self.den * k,
                self.off / k as i64,
            )
        })
    }

    /// The multiple the symbol must be for `self / k` to leave no fraction of
    /// the symbol: `num*S / (den*k)` an integer.
    pub fn multiple_for(&self, k: u64) -> u64 {
        let d = self.den.saturating_mul(k);
        d / gcd(self.num, d).max(1)
    }

    /// `floor(self / k)`, exact in the symbol once it is a multiple of
    /// [`Lin::multiple_for`]`(k)`.
    pub fn floor_div(&self, k: u64) -> Self {
        Self::reduced(
            self.sym.clone(),
            self.num,
            self.den.saturating_mul(k),
            self.off.div_euclid(k.max(1) as i64),
        )
    }

    /// The smallest symbol value (a multiple of `multiple`) for which
    /// `self >= at_least`.
    pub fn min_sym(&self, at_least: i64, multiple: u64) -> u64 {
        // num/den * S + off >= at_least  <=>  S >= (at_least - off) * den / num
        let need = (at_least - self.off) * self.den as i64;
        let s = if need <= 0 {
            1
        } else {
            (need as u64).div_ceil(self.num)
        };
        s.div_ceil(multiple.max(1)).max(1) * multiple.max(1)
    }

    /// The value for a given symbol value (assumed allowed).
    pub fn at(&self, s: u64) -> i64 {
        (self.num * s / self.den) as i64 + self.off
    }
}

impl fmt::Display for Lin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An unknown size (after an earlier error) prints as `?`.
        let sym = if is_unknown(&self.sym) {
            "?"
        } else {
            &self.sym
        };
        match (self.num, self.den) {
            (1, 1) => write!(f, "{sym}")?,
            (n, 1) => write!(f, "{n}*{sym}")?,
            (1, d) => write!(f, "{sym}/{d}")?,
            (n, d) => write!(f, "{n}*{sym}/{d}")?,
        }
        match self.off {
            0 => Ok(()),
            o if o > 0 => write!(f, " + {o}"),
            o => write!(f, " - {}", -o),
        }
    }
}

impl Dim {
    pub fn known(&self) -> Option<u64> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }

    pub fn sym(name: impl Into<String>) -> Dim {
        Dim::Lin(Lin::sym(name))
    }

    /// `self * k` for a known `k`.
    pub fn scale(&self, k: u64) -> Dim {
        match self {
            Dim::Known(n) => Dim::Known(n.saturating_mul(k)),
            Dim::Lin(l) => Dim::Lin(l.scale(k)),
            Dim::Sym(s) => Dim::Sym(format!("{k}*({s})")),
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Lin(l) => write!(f, "{l}"),
            Dim::Sym(s) if is_unknown(s) => {
                // `?3` prints as `?`.
                let mut digits = false;
                for c in s.chars() {
                    digits = match c {
                        UNKNOWN => true,
                        c if digits && c.is_ascii_digit() => continue,
                        _ => false,
                    };
                    write!(f, "{c}")?;
                }
                Ok(())
            }
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// What the input's symbols must satisfy for the shapes inferred over them
/// to be exact: each symbol a multiple of some number, and at least some
/// size. Checked at `forward`'s entry, with the layer that needs it named.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Constraints {
    pub rules: std::collections::BTreeMap<String, SymRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymRule {
    pub multiple: u64,
    /// The layer that needs the multiple.
    pub multiple_why: String,
    pub min: u64,
    pub min_why: String,
}

impl Constraints {
    fn rule(&mut self, sym: &str) -> &mut SymRule {
        self.rules.entry(sym.to_string()).or_insert(SymRule {
            multiple: 1,
            multiple_why: String::new(),
            min: 1,
            min_why: String::new(),
        })
    }

    pub fn multiple(&self, sym: &str) -> u64 {
        self.rules.get(sym).map_or(1, |r| r.multiple)
    }

    pub fn need_multiple(&mut self, sym: &str, m: u64, why: &str) {
        let r = self.rule(sym);
        let l = r.multiple / gcd(r.multiple, m) * m;
        if l != r.multiple {
            r.multiple = l;
            r.multiple_why = why.to_string();
        }
        // A raised multiple raises the minimum to a multiple too (a size
        // must be at least one multiple: the same layer needs it).
        if !r.min.is_multiple_of(r.multiple) {
            r.min = r.min.div_ceil(r.multiple) * r.multiple;
            r.min_why = r.multiple_why.clone();
        }
    }

    /// Records that `lin >= at_least` must hold.
    pub fn need_at_least(&mut self, lin: &Lin, at_least: i64, why: &str) {
        let m = self.multiple(&lin.sym);
        let s = lin.min_sym(at_least, m);
        let r = self.rule(&lin.sym);
        if s > r.min {
            r.min = s;
            r.min_why = why.to_string();
        }
    }

    pub fn merge(&mut self, other: &Constraints) {
        for (sym, o) in &other.rules {
            self.need_multiple(sym, o.multiple, &o.multiple_why);
            let r = self.rule(sym);
            if o.min > r.min {
                r.min = o.min;
                r.min_why = o.min_why.clone();
            }
            if !r.min.is_multiple_of(r.multiple) {
                r.min = r.min.div_ceil(r.multiple) * r.multiple;
                r.min_why = r.multiple_why.clone();
            }
        }
    }
}

pub type Shape = Vec<Dim>;

/// Marks a size no rule could give because of an earlier error: inference
/// goes on past a failed layer with the sizes the layer decides on its own
/// (a convolution's output channels, a `Linear`'s features) and a fresh
/// unknown symbol for the rest, so a later layer whose own numbers are wrong
/// is still reported, while any failure that reads an unknown size is not
/// (it would follow from the first). Prints as `?`.
const UNKNOWN: char = '?';

/// A fresh unknown size, `n` telling it from others (two unknowns are not
/// equal).
pub fn unknown_dim(n: usize) -> Dim {
    Dim::sym(format!("{UNKNOWN}{n}"))
}

/// Whether a symbol (or a symbolic size's text) involves an unknown size.
pub fn is_unknown(sym: &str) -> bool {
    sym.contains(UNKNOWN)
}

impl Dim {
    /// Involves a size unknown after an earlier error.
    pub fn is_unknown(&self) -> bool {
        match self {
            Dim::Known(_) => false,
            Dim::Lin(l) => is_unknown(&l.sym),
            Dim::Sym(s) => is_unknown(s),
        }
    }
}

/// Whether any dim of a shape is unknown after an earlier error.
pub fn has_unknown(shape: &[Dim]) -> bool {
    shape.iter().any(Dim::is_unknown)
}

pub fn fmt_shape(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(Dim::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// The product of dims, symbolic when any is (`16*H*W`).
pub fn product(dims: &[Dim]) -> Dim {
    let known: u64 = dims.iter().filter_map(Dim::known).product();
    let syms: Vec<String> = dims
        .iter()
        .filter_map(|d| match d {
            Dim::Known(_) => None,
            other => Some(other.to_string()),
        })
        .collect();
    if syms.is_empty() {
        return Dim::Known(known);
    }
    if known == 1 && syms.len() == 1 {
        if let Some(d) = dims.iter().find(|d| d.known().is_none()) {
            return d.clone();
        }
    }
    let mut parts = Vec::new();
    if known != 1 {
        parts.push(known.to_string());
    }
    parts.extend(syms.iter().map(|s| {
        if s.contains(['+', '-', '/']) {
            format!("({s})")
        } else {
            s.to_string()
        }
    }));
    Dim::Sym(parts.join("*"))
}

/// One spatial axis of a convolution or pooling window, PyTorch's formula:
/// `out = floor((in + pad_lo + pad_hi - dilation*(kernel-1) - 1) / stride) + 1`,
/// with `ceil` instead of `floor` in pooling's `ceil_mode`, where a last
/// window that would start in the right padding is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub input: u64,
    pub kernel: u64,
    pub stride: u64,
    pub pad_lo: u64,
    pub pad_hi: u64,
    pub dilation: u64,
    pub ceil: bool,
}

/// Why a window does not fit its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowTooLarge {
    pub padded: u64,
    pub effective_kernel: u64,
}

impl Window {
    /// `dilation*(kernel-1) + 1`: the span the kernel covers.
    pub fn effective_kernel(&self) -> u64 {
        self.dilation * (self.kernel - 1) + 1
    }

    pub fn padded(&self) -> u64 {
        self.input + self.pad_lo + self.pad_hi
    }

    pub fn out(&self) -> Result<u64, WindowTooLarge> {
        let (padded, eff) = (self.padded(), self.effective_kernel());
        let too_large = WindowTooLarge {
            padded,
            effective_kernel: eff,
        };
        let span = padded as i64 - eff as i64;
        let stride = self.stride as i64;
        if !self.ceil {
            return if span < 0 {
                Err(too_large)
            } else {
                Ok((span / stride) as u64 + 1)
            };
        }
        // Ceil mode, as PyTorch computes it: signed, rounded down after
        // adding stride - 1, so a window may hang over the end...
        let mut n = (span + stride - 1).div_euclid(stride) + 1;
        // ...but the last window must start inside the input or the left padding.
        if (n - 1) * stride >= (self.input + self.pad_lo) as i64 {
            n -= 1;
        }
        if n < 1 {
            Err(too_large)
        } else {
            Ok(n as u64)
        }
    }

    /// How many rows of the real input (not padding) at the end no window
    /// covers, given the output size `out`: PyTorch drops them silently.
    pub fn lost(&self, out: u64) -> u64 {
        let covered = (out.saturating_sub(1)) * self.stride + self.effective_kernel();
        (self.pad_lo + self.input).saturating_sub(covered)
    }

    /// The formula with this window's numbers, e.g.
    /// `floor((28 + 2 + 2 - 1*(5-1) - 1) / 1) + 1 = 28`.
    pub fn arithmetic(&self) -> String {
        // Signed, floor division: what the formula gives when it fails.
        let span = self.padded() as i64 - self.effective_kernel() as i64;
        let result = match self.out() {
            Ok(n) => n as i64,
            Err(_) => span.div_euclid(self.stride as i64) + 1,
        };
        let (i, k, s, d) = (self.input, self.kernel, self.stride, self.dilation);
        let (lo, hi) = (self.pad_lo, self.pad_hi);
        let round = if self.ceil { "ceil" } else { "floor" };
        let ceil_count =
            span.max(0).div_euclid(s as i64) + i64::from(span.rem_euclid(s as i64) != 0) + 1;
        let dropped = if self.ceil && self.out().is_ok() && result < ceil_count {
            " (the last window would start in the padding)"
        } else {
            ""
        };
        if lo == 0 && hi == 0 && d == 1 {
            format!("{round}(({i} - {k}) / {s}) + 1 = {result}{dropped}")
        } else {
            format!("{round}(({i} + {lo} + {hi} - {d}*({k}-1) - 1) / {s}) + 1 = {result}{dropped}")
        }
    }
}

/// `padding = same` (stride 1): total `dilation*(kernel-1)`, the odd extra on
/// the high side, as PyTorch pads.
pub fn same_padding(kernel: u64, dilation: u64) -> (u64, u64) {
    let total = dilation * (kernel - 1);
    (total / 2, total - total / 2)
}

/// Normalises a possibly negative `dim` against `rank`, as PyTorch does.
pub fn normalize_dim(dim: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let d = if dim < 0 { dim + r } else { dim };
    (0..r).contains(&d).then_some(d as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(input: u64, kernel: u64, stride: u64, pad: u64, dilation: u64) -> Window {
        Window {
            input,
            kernel,
            stride,
            pad_lo: pad,
            pad_hi: pad,
            dilation,
            ceil: false,
        }
    }

    #[test]
    fn conv_sizes_by_hand() {
        // LeNet: floor((28 + 2 + 2 - 4 - 1) / 1) + 1 = 28
        assert_eq!(w(28, 5, 1, 2, 1).out(), Ok(28));
        // floor((28 - 4 - 1) / 1) + 1 = 24
        assert_eq!(w(28, 5, 1, 0, 1).out(), Ok(24));
        // AlexNet conv1: floor((224 + 4 - 10 - 1) / 4) + 1 = 55
        assert_eq!(w(224, 11, 4, 2, 1).out(), Ok(55));
        // dilation 2, kernel 3 spans 5: floor((7 - 5) / 1) + 1 = 3
        assert_eq!(w(7, 3, 1, 0, 2).out(), Ok(3));
        // stride 2 on an odd size: floor((7 + 2 - 2 - 1) / 2) + 1 = 4
        assert_eq!(w(7, 3, 2, 1, 1).out(), Ok(4));
        assert_eq!(
            w(3, 5, 1, 0, 1).out(),
            Err(WindowTooLarge {
                padded: 3,
                effective_kernel: 5
            })
        );
    }

    #[test]
    fn pool_sizes_by_hand() {
        // max_pool(2) on 24: floor((24 - 2) / 2) + 1 = 12; on 5 the tail drops: 2
        assert_eq!(w(24, 2, 2, 0, 1).out(), Ok(12));
        assert_eq!(w(5, 2, 2, 0, 1).out(), Ok(2));
        // AlexNet pool 3/2 on 55: floor((55 - 3) / 2) + 1 = 27
        assert_eq!(w(55, 3, 2, 0, 1).out(), Ok(27));
    }

    #[test]
    fn ceil_mode_by_hand() {
        let c = |input, kernel, stride, pad| Window {
            ceil: true,
            ..w(input, kernel, stride, pad, 1)
        };
        // ceil((5 - 2) / 2) + 1 = 3; floor would give 2
        assert_eq!(c(5, 2, 2, 0).out(), Ok(3));
        // AlexNet-style 3/2 on 55: ceil(52 / 2) + 1 = 27, same as floor
        assert_eq!(c(55, 3, 2, 0).out(), Ok(27));
        // H = 5, k = 2, s = 2, p = 1: ceil((7 - 2) / 2) + 1 = 4, but window 3
        // would start at 6 >= 5 + 1 (in the right padding): 3
        assert_eq!(c(5, 2, 2, 1).out(), Ok(3));
        assert!(c(5, 2, 2, 1)
            .arithmetic()
            .ends_with("= 3 (the last window would start in the padding)"));
    }

    #[test]
    fn arithmetic_text() {
        assert_eq!(
            w(28, 5, 1, 0, 1).arithmetic(),
            "floor((28 - 5) / 1) + 1 = 24"
        );
        assert_eq!(
            w(28, 5, 1, 2, 1).arithmetic(),
            "floor((28 + 2 + 2 - 1*(5-1) - 1) / 1) + 1 = 28"
        );
    }

    #[test]
    fn failing_arithmetic_shows_the_negative_size() {
        assert_eq!(w(3, 5, 1, 0, 1).arithmetic(), "floor((3 - 5) / 1) + 1 = -1");
        assert_eq!(w(2, 5, 2, 0, 1).arithmetic(), "floor((2 - 5) / 2) + 1 = -1");
    }

    #[test]
    fn same_padding_puts_the_extra_high() {
        assert_eq!(same_padding(3, 1), (1, 1));
        assert_eq!(same_padding(4, 1), (1, 2));
        assert_eq!(same_padding(3, 2), (2, 2));
    }

    #[test]
    fn symbolic_dims_stay_exact() {
        let h = Lin::sym("H");
        // max_pool(2): floor(H / 2) is exact when H is a multiple of 2.
        assert_eq!(h.multiple_for(2), 2);
        let h2 = h.floor_div(2);
        assert_eq!(h2.to_string(), "H/2");
        // Again: H/2 / 2 needs H a multiple of 4.
        assert_eq!(h2.multiple_for(2), 4);
        assert_eq!(h2.floor_div(2).to_string(), "H/4");
        // A valid 3x3 convolution: H - 2; stride 2 with padding 1 on H:
        // floor((H + 2 - 3) / 2) + 1 = H/2.
        assert_eq!(h.shift(-2).to_string(), "H - 2");
        assert_eq!(h.shift(-1).floor_div(2).shift(1).to_string(), "H/2");
        assert_eq!(h2.scale(2), h);
        assert_eq!(h.scale(3).floor_div(2).to_string(), "3*H/2");
        assert_eq!(h2.min_sym(1, 2), 2);
        assert_eq!(h.shift(-4).min_sym(1, 1), 5);
        assert_eq!(h.shift(-4).at(10), 6);
        let mut c = Constraints::default();
        c.need_multiple("H", 2, "pool1");
        c.need_multiple("H", 8, "pool3");
        c.need_at_least(&h.floor_div(8), 1, "pool3");
        assert_eq!(c.rules["H"].multiple, 8);
        assert_eq!(c.rules["H"].min, 8);
    }

    #[test]
    fn products_and_dims() {
        assert_eq!(
            product(&[Dim::Known(16), Dim::Known(5), Dim::Known(5)]),
            Dim::Known(400)
        );
        assert_eq!(
            product(&[Dim::Known(16), Dim::sym("H"), Dim::sym("W")]),
            Dim::Sym("16*H*W".into())
        );
        assert_eq!(normalize_dim(-1, 2), Some(1));
        assert_eq!(normalize_dim(2, 2), None);
    }

    /// Output sizes PyTorch computed by running its ops, generated by
    /// `scripts/gen_fixtures.py`.
    #[test]
    fn agrees_with_pytorch_table() {
        let text = include_str!("../../../tests/fixtures/conv_output_sizes.json");
        let table: serde_json::Value = serde_json::from_str(text).unwrap();
        let u = |v: &serde_json::Value| v.as_u64().unwrap();
        let mut checked = 0;
        for r in table["conv2d"].as_array().unwrap() {
            let (pad, out) = (&r["padding"], &r["out"]);
            for (axis, input, k) in [(0, u(&r["h"]), u(&r["kh"])), (1, u(&r["w"]), u(&r["kw"]))] {
                let win = w(input, k, u(&r["stride"]), u(&pad[axis]), u(&r["dilation"]));
                assert_eq!(win.out(), Ok(u(&out[axis])), "{r}");
                checked += 1;
            }
        }
        for r in table["conv2d_errors"].as_array().unwrap() {
            let pad = &r["padding"];
            let fails = [(0, u(&r["h"]), u(&r["kh"])), (1, u(&r["w"]), u(&r["kw"]))]
                .iter()
                .any(|&(axis, input, k)| {
                    w(input, k, u(&r["stride"]), u(&pad[axis]), u(&r["dilation"]))
                        .out()
                        .is_err()
                });
            assert!(fails, "PyTorch rejects {r}, so must we");
            checked += 1;
        }
        for table_name in ["max_pool2d", "avg_pool2d"] {
            for r in table[table_name].as_array().unwrap() {
                for (axis, input) in [(0, u(&r["h"])), (1, u(&r["w"]))] {
                    let win = w(input, u(&r["k"]), u(&r["stride"]), 0, 1);
                    assert_eq!(win.out(), Ok(u(&r["out"][axis])), "{table_name} {r}");
                }
                checked += 1;
            }
            for r in table[&format!("{table_name}_errors")].as_array().unwrap() {
                let fails = [u(&r["h"]), u(&r["w"])]
                    .iter()
                    .any(|&i| w(i, u(&r["k"]), u(&r["stride"]), 0, 1).out().is_err());
                assert!(fails, "PyTorch rejects {table_name} {r}, so must we");
                checked += 1;
            }
        }
        assert!(
            checked > 2000,
            "the table is smaller than expected: {checked}"
        );
    }
}
