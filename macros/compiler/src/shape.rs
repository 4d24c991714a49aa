//! Shapes and the shape rules of every op, written as PyTorch's docs write
//! them. Error messages print the arithmetic these functions return, so what
//! the user reads is the arithmetic that ran.

use std::fmt;

/// One dim of a tensor shape known at compile time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Known(u64),
    /// A symbol from the input shape (`B`), or a product of symbols and
    /// numbers that only the input can decide (`16*H*W`).
    Sym(String),
}

impl Dim {
    pub fn known(&self) -> Option<u64> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

pub type Shape = Vec<Dim>;

pub fn fmt_shape(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(Dim::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// The product of dims, symbolic when any is (`16*H*W`).
pub fn product(dims: &[Dim]) -> Dim {
    let known: u64 = dims.iter().filter_map(Dim::known).product();
    let syms: Vec<&str> = dims
        .iter()
        .filter_map(|d| match d {
            Dim::Sym(s) => Some(s.as_str()),
            Dim::Known(_) => None,
        })
        .collect();
    if syms.is_empty() {
        return Dim::Known(known);
    }
    let mut parts = Vec::new();
    if known != 1 {
        parts.push(known.to_string());
    }
    parts.extend(syms.iter().map(|s| {
        if s.contains(['+', '-']) {
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
    fn products_and_dims() {
        assert_eq!(
            product(&[Dim::Known(16), Dim::Known(5), Dim::Known(5)]),
            Dim::Known(400)
        );
        assert_eq!(
            product(&[Dim::Known(16), Dim::Sym("H".into()), Dim::Sym("W".into())]),
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
