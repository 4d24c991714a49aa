//! The summary table of a `network!` network, shared by the compiler (the
//! `SUMMARY` constant, over the declared input shape) and the runtime
//! (`summary_at`, over given sizes of the input's symbols), so that both
//! print the same table the same way. Also the size expressions the
//! compiler writes a symbolic dim as (`H/2 - 2`, `16*H*W`) and their value
//! at given sizes. No dependencies.

use std::fmt;

/// One row of the table, every cell ready to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The layer's label (`conv1`, `cat`, `max_pool(2) #2`).
    pub layer: String,
    /// What it is (`Conv2d(3 -> 64, kernel 3, padding 1)`).
    pub op: String,
    /// Its output shape (`[1, 64, 256, 256]`, `[B, 64, H, W]`).
    pub output: String,
    /// Trainable parameters.
    pub params: u64,
    /// Multiply-adds per sample; `None`: unknown (printed `?`).
    pub macs: Option<u64>,
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table: a heading line naming the network, its input and its
/// parameters, then one line per row and a total. Rows with the same label
/// (three `cat` merges) are numbered `cat #1`, `cat #2`, ..
pub fn table(name: &str, input: &str, rows: &[Row]) -> String {
    let header = ["layer", "op", "output", "params", "MACs", "FLOPs"];
    let total_params: u64 = rows.iter().map(|r| r.params).sum();
    let total_macs: Option<u64> = rows
        .iter()
        .map(|r| r.macs)
        .try_fold(0u64, |acc, m| Some(acc.saturating_add(m?)));
    let fmt_macs =
        |m: Option<u64>, k: u64| m.map_or("?".to_string(), |m| thousands(m.saturating_mul(k)));
    let mut table: Vec<[String; 6]> = vec![header.map(String::from)];
    let shared = |label: &str| rows.iter().filter(|r| r.layer == label).count() > 1;
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for r in rows {
        let layer = if shared(&r.layer) {
            let n = seen.entry(&r.layer).or_default();
            *n += 1;
            format!("{} #{n}", r.layer)
        } else {
            r.layer.clone()
        };
        table.push([
            layer,
            r.op.clone(),
            r.output.clone(),
            thousands(r.params),
            fmt_macs(r.macs, 1),
            fmt_macs(r.macs, 2),
        ]);
    }
    table.push([
        "total".into(),
        String::new(),
        String::new(),
        thousands(total_params),
        fmt_macs(total_macs, 1),
        fmt_macs(total_macs, 2),
    ]);
    let widths: Vec<usize> = (0..6)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!(
        "{name}: input {input}, {} trainable parameters; MACs and FLOPs (= 2 x MACs) per sample\n",
        thousands(total_params)
    );
    for (i, r) in table.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c >= 3 {
                line += &" ".repeat(pad);
                line += cell;
            } else {
                line += cell;
                line += &" ".repeat(pad);
            }
            if c < 5 {
                line += "  ";
            }
        }
        out += line.trim_end();
        out.push('\n');
        if i == 0 || i == table.len() - 2 {
            out += &"-".repeat(widths.iter().sum::<usize>() + 10);
            out.push('\n');
        }
    }
    out
}

/// An op's text with its sizes filled in: each `{expr}` of `template`
/// (a size expression, `CenterCrop({H/2} x {W/2})`) replaced by what
/// `size` makes of it; the rest is kept. Over the declared input shape the
/// compiler keeps each expression as written, at given sizes the runtime
/// puts in its value.
pub fn fill<E>(
    template: &str,
    mut size: impl FnMut(&str) -> Result<String, E>,
) -> Result<String, E> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out += &rest[..open];
        out += &size(&rest[open + 1..open + close])?;
        rest = &rest[open + close + 1..];
    }
    out += rest;
    Ok(out)
}

/// Why a size expression has no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// It names a symbol without a size.
    Unbound(String),
    /// Its value is below zero.
    Negative(i128),
    /// Its value does not fit in a `u64`.
    Overflow,
    /// A division by zero.
    DivisionByZero,
    /// It is not a size expression (a bug in the compiler that wrote it).
    Syntax { expr: String, at: usize },
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Unbound(s) => write!(f, "`{s}` has no size"),
            EvalError::Negative(v) => write!(f, "it is {v}, below zero"),
            EvalError::Overflow => f.write_str("it does not fit in 64 bits"),
            EvalError::DivisionByZero => f.write_str("it divides by zero"),
            EvalError::Syntax { expr, at } => {
                write!(f, "`{expr}` is not a size expression (at byte {at})")
            }
        }
    }
}

impl std::error::Error for EvalError {}

/// The value of a size expression as the compiler prints a dim: integers,
/// symbols (identifiers), `+`, `-`, `*`, `/` (integer division, rounding
/// down, as the shape rules do) and parentheses, `*` and `/` binding
/// tighter and both sides of an operator evaluated left to right:
/// `3*H/2 + 1` is `floor(3*H / 2) + 1`. `size` gives each symbol's value.
pub fn eval(expr: &str, size: &dyn Fn(&str) -> Option<u64>) -> Result<u64, EvalError> {
    let mut p = Parser {
        text: expr,
        pos: 0,
        size,
    };
    let v = p.sum()?;
    p.skip_space();
    if p.pos != expr.len() {
        return Err(p.syntax());
    }
    if v < 0 {
        return Err(EvalError::Negative(v));
    }
    u64::try_from(v).map_err(|_| EvalError::Overflow)
}

/// The symbols a size expression names, in order of first use.
pub fn symbols(expr: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if is_ident_start(bytes[i]) {
            let start = i;
            while i < bytes.len() && is_ident_char(bytes[i]) {
                i += 1;
            }
            let s = &expr[start..i];
            if !out.contains(&s) {
                out.push(s);
            }
        } else {
            i += 1;
        }
    }
    out
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    size: &'a dyn Fn(&str) -> Option<u64>,
}

impl Parser<'_> {
    fn syntax(&self) -> EvalError {
        EvalError::Syntax {
            expr: self.text.to_string(),
            at: self.pos,
        }
    }

    fn skip_space(&mut self) {
        while self.text.as_bytes().get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.as_bytes().get(self.pos).copied()
    }

    fn sum(&mut self) -> Result<i128, EvalError> {
        let mut v = self.product()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.pos += 1;
            let r = self.product()?;
            v = if op == b'+' {
                v.checked_add(r)
            } else {
                v.checked_sub(r)
            }
            .ok_or(EvalError::Overflow)?;
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<i128, EvalError> {
        let mut v = self.atom()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.pos += 1;
            let r = self.atom()?;
            v = if op == b'*' {
                v.checked_mul(r).ok_or(EvalError::Overflow)?
            } else if r == 0 {
                return Err(EvalError::DivisionByZero);
            } else {
                v.div_euclid(r)
            };
        }
        Ok(v)
    }

    fn atom(&mut self) -> Result<i128, EvalError> {
        let bytes = self.text.as_bytes();
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let v = self.sum()?;
                if self.peek() != Some(b')') {
                    return Err(self.syntax());
                }
                self.pos += 1;
                Ok(v)
            }
            Some(b) if b.is_ascii_digit() => {
                let start = self.pos;
                while bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    self.pos += 1;
                }
                self.text[start..self.pos]
                    .parse::<i128>()
                    .map_err(|_| EvalError::Overflow)
            }
            Some(b) if is_ident_start(b) => {
                let start = self.pos;
                while bytes.get(self.pos).copied().is_some_and(is_ident_char) {
                    self.pos += 1;
                }
                let name = &self.text[start..self.pos];
                (self.size)(name)
                    .map(i128::from)
                    .ok_or_else(|| EvalError::Unbound(name.to_string()))
            }
            _ => Err(self.syntax()),
        }
    }
}

/// The transform size of the filters' FFT form for a padded length `n`:
/// the smallest even size at least `n` whose only prime factors are 2, 3
/// and 5 (the sizes `rustfft` is fastest on; 7 is slower: 2058 = 2·3·7³
/// took twice as long as 2160; even, so `realfft` uses its half-length
/// complex transform). The runtime transforms at this size and the
/// compiler's cost model prices it, so both read it here.
pub fn fft_len(n: usize) -> usize {
    let mut m = n.max(2);
    loop {
        if m.is_multiple_of(2) {
            let mut r = m;
            for p in [2, 3, 5] {
                while r.is_multiple_of(p) {
                    r /= p;
                }
            }
            if r == 1 {
                return m;
            }
        }
        m += 1;
    }
}

/// The output rows (or columns) per block of the filters' banded form for
/// a band of `k` taps: each block reads only the `bs + k - 1` input rows
/// its band touches, so a block twice the band or more does at most 1.5x
/// the multiply-adds of the band itself, and is wide enough for the matrix
/// multiply to run at speed. Shared by the runtime and the compiler's cost
/// model.
pub fn band_block(k: usize) -> usize {
    (2 * k.saturating_sub(1))
        .next_multiple_of(16)
        .clamp(64, 256)
}

/// Work of a 3x3 convolution's two lowerings in multiply-add equivalents,
/// `(direct, winograd)`, for `cin -> cout` channels over `batch` images of
/// `oh x ow` outputs, against the runtime's direct lowering (AVX-512;
/// [`winograd_costs_gathered`] without it). The compiler's Winograd pass
/// chooses from it where it knows the sizes, and the runtime where the
/// compiler left the choice to the sizes a call brings (a symbolic batch
/// or image size) or to the CPU, so both read it here.
///
/// Direct (patches gathered, one matrix product): `9 Cin Cout` per output
/// pixel, plus the weight read once (`9 Cin Cout` floats; a float read
/// from memory costs about 20 multiply-adds of time on the machines the
/// runtime was measured on).
///
/// Winograd F(4x4, 3x3), per 4x4 output tile: `36 Cin Cout` in the 36
/// channel products, about 2800 per tile and channel in the input and
/// output transforms (they run far below the products' rate), and a
/// transformed weight 4x the size of the direct one to read.
///
/// The transforms' figure is fitted to the runtime's direct lowering (the
/// product read from the input in place, no patches gathered), each
/// alone on the 2-core AVX-512 machine of `docs/performance.md`:
/// Winograd took 2.3x the direct time at 16 channels over 256x256, 1.2x
/// at 32 over 128x128, 1.1x for 64 -> 32 over 128x128, 0.87x at 64 over
/// 56x56 and 0.68x at 128 over 28x28. With 400, the figure fitted to the
/// gathered lowering, the U-Net's 16- and 32-channel layers took
/// Winograd.
pub fn winograd_costs(cin: u64, cout: u64, batch: u64, oh: u64, ow: u64) -> (f64, f64) {
    let (cin, cout, b) = (cin as f64, cout as f64, batch as f64);
    let pixels = b * (oh * ow) as f64;
    let tiles = b * (oh.div_ceil(4) * ow.div_ceil(4)) as f64;
    let direct = 9.0 * cin * cout * pixels + 20.0 * 9.0 * cin * cout;
    let winograd =
        36.0 * cin * cout * tiles + 2800.0 * tiles * (cin + cout) + 20.0 * 36.0 * cin * cout;
    (direct, winograd)
}

/// Whether Winograd F(4x4, 3x3) pays for a 3x3, stride-1, undilated,
/// ungrouped convolution of these sizes: at least 8 channels each way,
/// and modelled work ([`winograd_costs`]) under the direct lowering's.
pub fn winograd_pays(cin: u64, cout: u64, batch: u64, oh: u64, ow: u64) -> bool {
    pays(cin, cout, winograd_costs(cin, cout, batch, oh, ow))
}

/// At least 8 channels each way, and the modelled `(direct, winograd)`
/// work under the direct lowering's.
fn pays(cin: u64, cout: u64, (direct, wino): (f64, f64)) -> bool {
    cin >= 8 && cout >= 8 && wino < direct
}

/// Multiply-add equivalents of gathering one patch value: the gathered
/// lowering copies `9 Cin` values per output pixel into its panel before
/// the product ([`winograd_costs_gathered`]).
const GATHER: f64 = 25.0;

/// [`winograd_costs`] where the runtime has no direct lowering (a CPU
/// without AVX-512): the direct side gathers its patches first, `9 Cin`
/// values per output pixel at 25 multiply-adds each.
///
/// Fitted on a 2-core AMD EPYC (Zen 3, AVX2), each layer alone, Winograd
/// against the gathered lowering: 1.0-1.3x at 16 channels over 256x256,
/// 0.81-0.91x for 32 -> 16 over 256x256, 0.66x at 32 over 128x128,
/// 0.59-0.66x for 64 -> 32 over 128x128; the transforms' figure fitted to
/// the direct lowering (2800) also fits there. Against the direct
/// lowering those layers lose (1.1-2.3x).
pub fn winograd_costs_gathered(cin: u64, cout: u64, batch: u64, oh: u64, ow: u64) -> (f64, f64) {
    let (direct, wino) = winograd_costs(cin, cout, batch, oh, ow);
    let pixels = (batch * oh * ow) as f64;
    (direct + GATHER * 9.0 * cin as f64 * pixels, wino)
}

/// [`winograd_pays`] where the runtime has no direct lowering
/// ([`winograd_costs_gathered`]). Wherever Winograd pays against the
/// direct lowering it pays here too.
pub fn winograd_pays_gathered(cin: u64, cout: u64, batch: u64, oh: u64, ow: u64) -> bool {
    pays(cin, cout, winograd_costs_gathered(cin, cout, batch, oh, ow))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_lengths() {
        assert_eq!(fft_len(1), 2);
        assert_eq!(fft_len(11), 12);
        assert_eq!(fft_len(97), 100);
        assert_eq!(fft_len(127), 128);
        assert_eq!(fft_len(2050), 2160);
        assert_eq!(fft_len(2108), 2160);
    }

    fn at(expr: &str) -> Result<u64, EvalError> {
        eval(expr, &|s| match s {
            "H" => Some(64),
            "W" => Some(48),
            "T_in" => Some(10),
            _ => None,
        })
    }

    #[test]
    fn evaluates_what_the_compiler_prints() {
        assert_eq!(at("7"), Ok(7));
        assert_eq!(at("H"), Ok(64));
        assert_eq!(at("H/2"), Ok(32));
        assert_eq!(at("3*H/2 + 1"), Ok(97));
        assert_eq!(at("H/4 - 2"), Ok(14));
        assert_eq!(at("16*H*W"), Ok(16 * 64 * 48));
        assert_eq!(at("16*(H/2)*(W/2 - 1)"), Ok(16 * 32 * 23));
        assert_eq!(at("H+W"), Ok(112));
        assert_eq!(at("2*(T_in)"), Ok(20));
        // Integer division rounds down, as the shape rules do.
        assert_eq!(at("(W + 1)/2"), Ok(24));
    }

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(at("H*C"), Err(EvalError::Unbound("C".into())));
        assert_eq!(at("H - 65"), Err(EvalError::Negative(-1)));
        assert_eq!(at("H/(W - 48)"), Err(EvalError::DivisionByZero));
        assert!(matches!(at("H +"), Err(EvalError::Syntax { .. })));
        assert!(matches!(at("(H"), Err(EvalError::Syntax { .. })));
        assert!(matches!(at("_?"), Err(EvalError::Unbound(_))));
        assert_eq!(
            at("99999999999999999999*99999999999999999999"),
            Err(EvalError::Overflow)
        );
        assert_eq!(symbols("16*(H/2)*W + H"), ["H", "W"]);
    }

    #[test]
    fn fills_op_text() {
        let keep = fill("CenterCrop({H/2} x {W})", |e| {
            Ok::<_, EvalError>(e.to_string())
        });
        assert_eq!(keep.as_deref(), Ok("CenterCrop(H/2 x W)"));
        let at_size = fill("CenterCrop({H/2} x {W})", |e| at(e).map(|v| v.to_string()));
        assert_eq!(at_size.as_deref(), Ok("CenterCrop(32 x 48)"));
        assert_eq!(
            fill("Crop({C} x 2)", |e| at(e).map(|v| v.to_string())),
            Err(EvalError::Unbound("C".into()))
        );
        assert_eq!(
            fill("Cat(dim 1)", |_| Err::<String, _>(EvalError::Overflow)).as_deref(),
            Ok("Cat(dim 1)")
        );
    }

    #[test]
    fn table_layout() {
        let rows = [
            Row {
                layer: "conv".into(),
                op: "Conv2d(1 -> 2, kernel 3)".into(),
                output: "[1, 2, 8, 8]".into(),
                params: 20,
                macs: Some(1152),
            },
            Row {
                layer: "cat".into(),
                op: "Cat(dim 1)".into(),
                output: "[1, 3, 8, 8]".into(),
                params: 0,
                macs: Some(0),
            },
            Row {
                layer: "cat".into(),
                op: "Cat(dim 1)".into(),
                output: "[1, 4, 8, 8]".into(),
                params: 0,
                macs: None,
            },
        ];
        let t = table("Net", "[1, 1, 8, 8]", &rows);
        let want = "\
Net: input [1, 1, 8, 8], 20 trainable parameters; MACs and FLOPs (= 2 x MACs) per sample
layer   op                        output        params   MACs  FLOPs
--------------------------------------------------------------------
conv    Conv2d(1 -> 2, kernel 3)  [1, 2, 8, 8]      20  1,152  2,304
cat #1  Cat(dim 1)                [1, 3, 8, 8]       0      0      0
cat #2  Cat(dim 1)                [1, 4, 8, 8]       0      ?      ?
--------------------------------------------------------------------
total                                               20      ?      ?
";
        assert_eq!(t, want);
    }
}
