//! Shapes and the shape rules of every op, written as PyTorch's docs write
//! them. Error messages print the arithmetic these functions return, so what
//! the user reads is the arithmetic that ran.

use std::fmt;

/// One dim of a tensor shape known at compile time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Known(u64),
    /// A size in one symbol of the input, PyTorch's output-size arithmetic
    /// over it: `H`, `H/2`, `2*H`, `(H + 1)/2`, `H/2 - 2` (`/` rounds down).
    Lin(Lin),
    /// Anything else only the input can decide (`16*H*W`): equal only to itself.
    Sym(String),
}

/// A size in one symbol of the input, built from PyTorch's output-size
/// arithmetic: `a*S + c1*floor(E1 / k1) + .. + off`, each `E` again such
/// an expression. `/` in a printed size is that floor division (as Rust's
/// `/` on integers): `H/2`, `(H + 1)/2`, `H/2 - 2`, `2*(H/4)`.
///
/// Kept in a canonical form: a floor's expression holds only the terms its
/// divisor does not divide, an offset in `0..k`, no common factor with `k`,
/// and `floor((floor(E / a) + r) / b)` is `floor((E + r*a) / (a*b))`. Two
/// sizes are equal (`==`) when they are the same function of the symbol:
/// the same slope and the same values over one period of their floors.
#[derive(Clone, Debug, Eq)]
pub struct Lin {
    pub sym: String,
    /// The symbol's own coefficient.
    pub a: i64,
    /// `c * floor(inner / k)` terms, none with `c == 0`.
    pub floors: Vec<(i64, Floor)>,
    pub off: i64,
}

/// `floor(inner / k)`, `k >= 2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Floor {
    pub inner: Box<Lin>,
    pub k: u64,
}

/// Periods longer than this are not enumerated: two sizes are then equal
/// only when they print the same.
const MAX_PERIOD: u64 = 1 << 16;

pub fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    (a / gcd(a, b).max(1)).saturating_mul(b)
}

impl PartialEq for Lin {
    fn eq(&self, other: &Self) -> bool {
        self.sym == other.sym
            && (self.to_string() == other.to_string()
                || (self.slope() == other.slope() && self.agree_over_period(other)))
    }
}

impl std::hash::Hash for Lin {
    /// Equal sizes share their symbol; the rest is `==`'s business.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.sym.hash(state);
    }
}

impl Lin {
    pub fn sym(name: impl Into<String>) -> Self {
        Lin {
            sym: name.into(),
            a: 1,
            floors: Vec::new(),
            off: 0,
        }
    }

    fn number(sym: &str, off: i64) -> Self {
        Lin {
            sym: sym.to_string(),
            a: 0,
            floors: Vec::new(),
            off,
        }
    }

    /// `c * floor(f)` added, merged with an equal floor term.
    fn add_floor(&mut self, c: i64, f: Floor) {
        if c == 0 {
            return;
        }
        let key = f.to_string();
        if let Some(pos) = self.floors.iter().position(|(_, g)| g.to_string() == key) {
            self.floors[pos].0 = self.floors[pos].0.saturating_add(c);
            if self.floors[pos].0 == 0 {
                self.floors.remove(pos);
            }
        } else {
            self.floors.push((c, f));
            self.floors.sort_by_key(|(_, g)| (g.k, g.to_string()));
        }
    }

    /// `self * k`.
    pub fn scale(&self, k: u64) -> Self {
        self.times(k as i64)
    }

    fn times(&self, k: i64) -> Self {
        if k == 0 {
            return Self::number(&self.sym, 0);
        }
        Lin {
            sym: self.sym.clone(),
            a: self.a.saturating_mul(k),
            floors: self
                .floors
                .iter()
                .map(|(c, f)| (c.saturating_mul(k), f.clone()))
                .collect(),
            off: self.off.saturating_mul(k),
        }
    }

    pub fn shift(&self, c: i64) -> Self {
        Lin {
            off: self.off.saturating_add(c),
            ..self.clone()
        }
    }

    /// `self + other`, same symbol.
    pub fn add(&self, other: &Lin) -> Self {
        let mut out = self.clone();
        out.a = out.a.saturating_add(other.a);
        out.off = out.off.saturating_add(other.off);
        for (c, f) in &other.floors {
            out.add_floor(*c, f.clone());
        }
        out
    }

    /// `self - other`, same symbol.
    pub fn sub(&self, other: &Lin) -> Self {
        self.add(&other.times(-1))
    }

    /// `floor(self / k)`, PyTorch's (and Rust's) rounding of a size.
    pub fn floor_div(&self, k: u64) -> Self {
        if k <= 1 {
            return self.clone();
        }
        let ki = k as i64;
        // What `k` divides comes out of the floor whole.
        let mut outer = Self::number(&self.sym, self.off.div_euclid(ki));
        let mut inner = Self::number(&self.sym, self.off.rem_euclid(ki));
        if self.a % ki == 0 {
            outer.a = self.a / ki;
        } else {
            inner.a = self.a;
        }
        for (c, f) in &self.floors {
            if c % ki == 0 {
                outer.add_floor(c / ki, f.clone());
            } else {
                inner.add_floor(*c, f.clone());
            }
        }
        if inner.a == 0 && inner.floors.is_empty() {
            // 0 <= off < k: nothing left.
            return outer;
        }
        // floor((g*T + r) / (g*m)) = floor((T + floor(r/g)) / m).
        let g = inner
            .floors
            .iter()
            .fold(gcd(k, inner.a.unsigned_abs()), |g, (c, _)| {
                gcd(g, c.unsigned_abs())
            });
        let k = if g > 1 {
            inner.a /= g as i64;
            for (c, _) in inner.floors.iter_mut() {
                *c /= g as i64;
            }
            inner.off = inner.off.div_euclid(g as i64);
            k / g
        } else {
            k
        };
        if k == 1 {
            return outer.add(&inner);
        }
        // floor((floor(E / a) + r) / b) = floor((E + r*a) / (a*b)).
        if inner.a == 0 && inner.floors.len() == 1 && inner.floors[0].0 == 1 {
            let f = &inner.floors[0].1;
            let e = f.inner.shift(inner.off.saturating_mul(f.k as i64));
            return outer.add(&e.floor_div(f.k.saturating_mul(k)));
        }
        outer.add_floor(
            1,
            Floor {
                inner: Box::new(inner),
                k,
            },
        );
        outer
    }

    /// `ceil(self / k)`.
    pub fn ceil_div(&self, k: u64) -> Self {
        self.shift(k as i64 - 1).floor_div(k)
    }

    /// `n*S` (no floors, no offset): `Some(n)`.
    pub fn as_multiple(&self) -> Option<u64> {
        (self.floors.is_empty() && self.off == 0 && self.a > 0).then_some(self.a as u64)
    }

    /// Whether this is the symbol itself.
    pub fn is_plain(&self) -> bool {
        self.as_multiple() == Some(1)
    }

    /// The growth per unit of the symbol, as a fraction `(num, den)` in
    /// lowest terms, `den > 0`.
    pub fn slope(&self) -> (i128, i128) {
        let (mut num, mut den) = (self.a as i128, 1i128);
        for (c, f) in &self.floors {
            let (n, d) = f.inner.slope();
            let (n, d) = (n * *c as i128, d * f.k as i128);
            num = num * d + n * den;
            den *= d;
            let g = gcd(num.unsigned_abs() as u64, den.unsigned_abs() as u64).max(1) as i128;
            num /= g;
            den /= g;
        }
        (num, den)
    }

    /// A period `p` of the floors: `self(S + p) - self(S)` is the same for
    /// every `S`.
    pub fn period(&self) -> u64 {
        self.floors
            .iter()
            .fold(1, |p, (_, f)| lcm(p, f.inner.period().saturating_mul(f.k)))
    }

    /// The value at a symbol value `s`.
    pub fn at(&self, s: u64) -> i64 {
        self.at_i(s as i64)
    }

    fn at_i(&self, s: i64) -> i64 {
        let mut v = self.a.saturating_mul(s).saturating_add(self.off);
        for (c, f) in &self.floors {
            v = v.saturating_add(c.saturating_mul(f.inner.at_i(s).div_euclid(f.k as i64)));
        }
        v
    }

    /// `Some(c)` when the size is `c` whatever the symbol's value.
    pub fn constant(&self) -> Option<i64> {
        let p = self.period();
        let c = self.at_i(1);
        (self.slope().0 == 0 && p <= MAX_PERIOD && (1..=p as i64).all(|s| self.at_i(s) == c))
            .then_some(c)
    }

    fn agree_over_period(&self, other: &Lin) -> bool {
        let p = lcm(self.period(), other.period());
        p <= MAX_PERIOD && (1..=p as i64).all(|s| self.at_i(s) == other.at_i(s))
    }

    /// The symbol values for which `self` and `other` are equal, as
    /// `(period, residues)`: `S % period` in `residues`. `None` when they
    /// are never equal, or only at finitely many sizes (slopes differ),
    /// or the period is too long to list.
    pub fn equal_where(&self, other: &Lin) -> Option<(u64, Vec<u64>)> {
        if self.sym != other.sym || self.slope() != other.slope() {
            return None;
        }
        let p = lcm(self.period(), other.period());
        if p > MAX_PERIOD {
            return None;
        }
        let residues: Vec<u64> = (0..p)
            .filter(|&r| {
                let s = (r + p) as i64;
                self.at_i(s) == other.at_i(s)
            })
            .collect();
        (!residues.is_empty()).then_some((p, residues))
    }

    /// The smallest value over one period (the slope taken out) and the
    /// slope: `self(S) >= slope*S + low` for every `S`.
    fn low(&self) -> ((i128, i128), (i128, i128)) {
        let (n, d) = self.slope();
        let p = self.period().min(MAX_PERIOD) as i64;
        // self(s) - n/d * s, as a fraction over d.
        let low = (1..=p)
            .map(|s| self.at_i(s) as i128 * d - n * s as i128)
            .min()
            .unwrap_or(0);
        ((n, d), (low, d))
    }

    /// The smallest symbol value `s >= 1` from which on `self >= at_least`
    /// holds (for every larger value too); `None` if it never does for all.
    pub fn min_sym(&self, at_least: i64) -> Option<u64> {
        let ((n, d), (low, _)) = self.low();
        if n < 0 {
            return None;
        }
        if n == 0 {
            // Periodic: it holds everywhere or fails again and again.
            return (low >= at_least as i128 * d).then_some(1);
        }
        // slope*S + low/d >= at_least once S >= (at_least*d - low) / n.
        let bound = (at_least as i128 * d - low).max(0) / n + 1;
        let bound = bound.min(1 << 24) as i64;
        let last_fail = (1..=bound).rev().find(|&s| self.at_i(s) < at_least);
        Some(last_fail.map_or(1, |s| s as u64 + 1))
    }
}

impl fmt::Display for Floor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &*self.inner;
        if e.floors.is_empty() && e.off == 0 && e.a > 0 {
            write!(f, "{e}/{}", self.k)
        } else {
            write!(f, "({e})/{}", self.k)
        }
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
        // Terms as (coefficient, text), the positive ones first.
        let mut terms: Vec<(i64, String)> = Vec::new();
        if self.a != 0 {
            terms.push((self.a, sym.to_string()));
        }
        for (c, fl) in &self.floors {
            let t = fl.to_string();
            // `2*(H/4)`: the floor before the product, as printed sizes
            // are evaluated left to right.
            let t = if c.unsigned_abs() == 1 {
                t
            } else {
                format!("({t})")
            };
            terms.push((*c, t));
        }
        terms.sort_by_key(|(c, _)| *c < 0);
        let mut first = true;
        for (c, t) in &terms {
            let m = c.unsigned_abs();
            let body = if m == 1 {
                t.clone()
            } else {
                format!("{m}*{t}")
            };
            match (first, *c < 0) {
                (true, false) => write!(f, "{body}")?,
                (true, true) => {
                    // All terms negative: the constant leads.
                    write!(f, "{} - {body}", self.off)?;
                    first = false;
                    continue;
                }
                (false, false) => write!(f, " + {body}")?,
                (false, true) => write!(f, " - {body}")?,
            }
            first = false;
        }
        let leading_constant = terms.first().is_some_and(|(c, _)| *c < 0);
        match (first, self.off) {
            (true, o) => write!(f, "{o}"),
            _ if leading_constant => Ok(()),
            (false, 0) => Ok(()),
            (false, o) if o > 0 => write!(f, " + {o}"),
            (false, o) => write!(f, " - {}", -o),
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

/// What the input's symbols must satisfy for the network to run: a
/// smallest size (every window needs an output, a crop its rows), and,
/// where two sizes must be equal (the inputs of a merge) for some values of
/// the symbol only, those values: `S % period` in a set (`2*(H/2)` and `H`
/// are equal for an even `H`). Checked at `forward`'s entry, with the layer
/// that needs each named.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Constraints {
    pub rules: std::collections::BTreeMap<String, SymRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymRule {
    /// The allowed sizes: `S % period` in `residues` (period 1: any), the
    /// period the shortest that describes them.
    pub period: u64,
    pub residues: Vec<u64>,
    /// The layer that needs them.
    pub residues_why: String,
    /// The smallest size allowed.
    pub min: u64,
    pub min_why: String,
}

impl SymRule {
    /// `Some(m)` when the allowed sizes are the multiples of `m`.
    pub fn multiple(&self) -> Option<u64> {
        (self.residues == [0]).then_some(self.period)
    }

    /// The allowed sizes in words: `a multiple of 16`, `8, 9 or 10 modulo 16`.
    pub fn describe(&self) -> String {
        match self.multiple() {
            Some(m) => format!("a multiple of {m}"),
            None => {
                let rs: Vec<String> = self.residues.iter().map(u64::to_string).collect();
                let (last, rest) = rs
                    .split_last()
                    .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
                if rest.is_empty() {
                    format!("{last} modulo {}", self.period)
                } else {
                    format!("{} or {last} modulo {}", rest.join(", "), self.period)
                }
            }
        }
    }

    fn allows(&self, s: u64) -> bool {
        self.residues.contains(&(s % self.period))
    }

    /// `min` raised to an allowed size.
    fn round_min(&mut self) {
        if !self.allows(self.min) {
            let mut s = self.min;
            while !self.allows(s) {
                s += 1;
            }
            self.min = s;
            self.min_why = self.residues_why.clone();
        }
    }
}

/// The shortest period that describes the same set of residues.
fn reduce_residues(period: u64, residues: Vec<u64>) -> (u64, Vec<u64>) {
    for d in 1..period {
        if period.is_multiple_of(d)
            && residues
                .iter()
                .all(|r| residues.contains(&((r + d) % period)))
        {
            let mut rs: Vec<u64> = residues.iter().map(|r| r % d).collect();
            rs.sort_unstable();
            rs.dedup();
            return (d, rs);
        }
    }
    (period, residues)
}

impl Constraints {
    fn rule(&mut self, sym: &str) -> &mut SymRule {
        self.rules.entry(sym.to_string()).or_insert(SymRule {
            period: 1,
            residues: vec![0],
            residues_why: String::new(),
            min: 1,
            min_why: String::new(),
        })
    }

    /// Records that `S % period` must be in `residues`; an error naming
    /// both rules when no size is left that every rule allows.
    pub fn need_residues(
        &mut self,
        sym: &str,
        period: u64,
        residues: &[u64],
        why: &str,
    ) -> Result<(), String> {
        let r = self.rule(sym);
        let p = lcm(r.period, period.max(1));
        let both: Vec<u64> = if p > MAX_PERIOD {
            Vec::new()
        } else {
            (0..p)
                .filter(|s| r.allows(*s) && residues.contains(&(s % period.max(1))))
                .collect()
        };
        if both.is_empty() {
            let (period, residues) = reduce_residues(period.max(1), residues.to_vec());
            let wanted = SymRule {
                period,
                residues,
                residues_why: String::new(),
                min: 1,
                min_why: String::new(),
            };
            return Err(format!(
                "no size of `{sym}` works: {why} needs `{sym}` to be {}, but {} needs it to be {}",
                wanted.describe(),
                r.residues_why,
                r.describe()
            ));
        }
        let (p, both) = reduce_residues(p, both);
        if (p, &both) != (r.period, &r.residues) {
            r.period = p;
            r.residues = both;
            r.residues_why = why.to_string();
        }
        r.round_min();
        Ok(())
    }

    /// Whether `a` and `b` are one size: `Ok(true)` when they are equal for
    /// every value of their symbol, or for some values, now recorded as a
    /// rule (`2*(H/2)` and `H`: an even `H`; `why` names what joins them);
    /// `Ok(false)` when never; an error when the rule leaves no size.
    pub fn need_equal(&mut self, a: &Dim, b: &Dim, why: &str) -> Result<bool, String> {
        if a == b {
            return Ok(true);
        }
        let (Dim::Lin(x), Dim::Lin(y)) = (a, b) else {
            return Ok(false);
        };
        match x.equal_where(y) {
            Some((period, residues)) => self
                .need_residues(&x.sym, period, &residues, why)
                .map(|()| true),
            None => Ok(false),
        }
    }

    /// Records that the symbol must be a multiple of `m`.
    pub fn need_multiple(&mut self, sym: &str, m: u64, why: &str) -> Result<(), String> {
        self.need_residues(sym, m, &[0], why)
    }

    /// Records that `lin >= at_least` must hold.
    pub fn need_at_least(&mut self, lin: &Lin, at_least: i64, why: &str) {
        let Some(s) = lin.min_sym(at_least) else {
            return;
        };
        let r = self.rule(&lin.sym);
        if s > r.min {
            r.min = s;
            r.min_why = why.to_string();
            r.round_min();
        }
    }

    /// Adds another set of rules (a block's, at its use); an error when
    /// some symbol has no size left.
    pub fn merge(&mut self, other: &Constraints) -> Result<(), String> {
        let mut result = Ok(());
        for (sym, o) in &other.rules {
            if let Err(e) = self.need_residues(sym, o.period, &o.residues, &o.residues_why) {
                result = result.and(Err(e));
            }
            let r = self.rule(sym);
            if o.min > r.min {
                r.min = o.min;
                r.min_why = o.min_why.clone();
                r.round_min();
            }
        }
        result
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
    fn symbolic_dims_round_down_as_pytorch_does() {
        let h = Lin::sym("H");
        // max_pool(2): floor((H - 2) / 2) + 1 = H/2, for any H.
        let h2 = h.shift(-2).floor_div(2).shift(1);
        assert_eq!(h2.to_string(), "H/2");
        // Again: floor(floor(H/2) / 2) = floor(H/4).
        assert_eq!(h2.floor_div(2).to_string(), "H/4");
        // Kernel 3, stride 2, padding 1: floor((H - 1) / 2) + 1 = ceil(H/2).
        let c = h.shift(-1).floor_div(2).shift(1);
        assert_eq!(c.to_string(), "(H + 1)/2");
        assert_eq!(c, h.ceil_div(2));
        // Twice: ((H + 1)/2 + 1)/2 collapses to (H + 3)/4.
        let cc = c.shift(-1).floor_div(2).shift(1);
        assert_eq!(cc.to_string(), "(H + 3)/4");
        assert_eq!(h.shift(-2).to_string(), "H - 2");
        assert_eq!(h.shift(-4).floor_div(2).to_string(), "H/2 - 2");
        assert_eq!(h.scale(3).floor_div(2).to_string(), "3*H/2");
        assert_eq!(h.scale(2).shift(1).floor_div(4).to_string(), "H/2");
        assert_eq!(h2.scale(2).to_string(), "2*(H/2)");
        // Equality is as functions of H: 2*(H/2) is not H...
        assert_ne!(h2.scale(2), h);
        assert_eq!(h.scale(4).floor_div(2), h.scale(2));
        assert_eq!(h.shift(-1).floor_div(2).shift(1), h.shift(1).floor_div(2));
        assert_eq!(h.sub(&h2).to_string(), "H - H/2");
        assert_eq!(h.sub(&h2), h.ceil_div(2));
        // ...but is for an even H.
        assert_eq!(h2.scale(2).equal_where(&h), Some((2, vec![0])));
        // H/8 and 2*(H/16) (a U-Net's skip and its upsampling): the lower
        // half of each 16.
        let h8 = h.floor_div(8);
        let up = h.floor_div(16).scale(2);
        assert_eq!(up.equal_where(&h8), Some((16, (0..8).collect())));
        assert_eq!(h.equal_where(&h.scale(2)), None);
        // Values, as the runtime computes them.
        for s in 1..50u64 {
            assert_eq!(c.at(s), s.div_ceil(2) as i64);
            assert_eq!(cc.at(s), s.div_ceil(2).div_ceil(2) as i64);
            assert_eq!(h.sub(&h2).at(s), s.div_ceil(2) as i64);
        }
        assert_eq!(h.slope(), (1, 1));
        assert_eq!(cc.slope(), (1, 4));
        assert_eq!(cc.period(), 4);
        // Smallest sizes: H/2 >= 1 from H = 2; H - 4 >= 1 from 5; H - 2*(H/2)
        // (H's parity) is never at least 1 for all H.
        assert_eq!(h2.min_sym(1), Some(2));
        assert_eq!(h.shift(-4).min_sym(1), Some(5));
        assert_eq!(h.sub(&h2.scale(2)).min_sym(1), None);
        assert_eq!(h.sub(&h2.scale(2)).min_sym(0), Some(1));
        assert_eq!(h.shift(-4).at(10), 6);
        assert_eq!(h.sub(&h).constant(), Some(0));
        assert_eq!(h.sub(&h2.scale(2)).constant(), None);
        let mut c = Constraints::default();
        c.need_multiple("H", 2, "pool1").unwrap();
        c.need_multiple("H", 8, "pool3").unwrap();
        c.need_at_least(&h.floor_div(8), 1, "pool3");
        assert_eq!(c.rules["H"].multiple(), Some(8));
        assert_eq!(c.rules["H"].min, 8);
        // Residues that are the multiples of 16 in the end.
        let mut c = Constraints::default();
        c.need_residues("H", 16, &(0..8).collect::<Vec<_>>(), "up1")
            .unwrap();
        assert_eq!(
            c.rules["H"].describe(),
            "0, 1, 2, 3, 4, 5, 6 or 7 modulo 16"
        );
        c.need_residues("H", 8, &[0, 1, 2, 3], "up2").unwrap();
        c.need_residues("H", 2, &[0], "up4").unwrap();
        assert_eq!(c.rules["H"].describe(), "0 or 2 modulo 16");
        c.need_residues("H", 4, &[0], "up3").unwrap();
        assert_eq!(c.rules["H"].multiple(), Some(16));
        let e = c.need_residues("H", 2, &[1], "odd").unwrap_err();
        assert!(e.contains("no size of `H` works: odd needs `H` to be 1 modulo 2, but up3 needs it to be a multiple of 16"), "{e}");
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
