//! A network's summary at given sizes of its input's symbols: the rows
//! the compiler inferred over the declared input shape (`[B, 3, H, W]`),
//! their output shapes and multiply-adds evaluated at the sizes, printed by
//! the same table as the compile-time `SUMMARY`.

use netdsl_summary::{eval, fill, EvalError, Row};

use crate::shape::{check_sizes, InputDim};
use crate::{Error, Result};

/// What the compiler knows of a network's summary, sizes as expressions in
/// the input's symbols; a generated network's `SUMMARY_SPEC`.
#[derive(Debug, Clone, Copy)]
pub struct SummarySpec {
    /// The network's name.
    pub network: &'static str,
    /// The declared input shape, as written.
    pub input: &'static str,
    /// The input's dims, with what the shapes need of each symbol (as
    /// `forward` checks them).
    pub dims: &'static [InputDim],
    pub rows: &'static [SummaryRow],
    /// Printed after the table (the notes on time of 1-D networks).
    pub notes: &'static str,
    /// Symbols only the network's further inputs have (`S` of `src: [B,
    /// S]` when the first input is `[B, T]`): they take sizes too.
    pub more: &'static [&'static str],
}

/// One row of the summary; sizes are expressions (`H/2 - 2`, `16*H*W`).
#[derive(Debug, Clone, Copy)]
pub struct SummaryRow {
    pub layer: &'static str,
    /// The op's text; a `{expr}` in it is a size (`CenterCrop({H/2} x {W/2})`).
    pub op: &'static str,
    pub output: &'static [&'static str],
    /// Trainable parameters.
    pub params: u64,
    /// Multiply-adds per sample: the sum of `factor * dims[0] * dims[1] * ..`.
    pub macs: &'static [(u64, &'static [&'static str])],
}

impl SummarySpec {
    /// The input's symbols, in order of first appearance.
    fn symbols(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for d in self.dims {
            if let InputDim::Sym(s) | InputDim::Rule { sym: s, .. } = *d {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        for s in self.more {
            if !out.contains(s) {
                out.push(s);
            }
        }
        out
    }
}

/// The summary of `spec` at `sizes` (`[("B", 1), ("H", 256), ("W", 256)]`),
/// one size for each symbol of the input. Sizes the network cannot take (a
/// size its poolings do not divide) are the error `forward` would give an
/// input of that shape.
pub fn summary_at(spec: &SummarySpec, sizes: &[(&str, usize)]) -> Result<String> {
    let symbols = spec.symbols();
    let fail = |reason: String| Error::SummarySizes {
        network: spec.network,
        input: spec.input,
        symbols: symbols.clone(),
        given: sizes.iter().map(|&(s, n)| (s.to_string(), n)).collect(),
        reason,
    };
    for (i, &(name, _)) in sizes.iter().enumerate() {
        if !symbols.contains(&name) {
            return Err(fail(format!("`{name}` is not a symbol of the input")));
        }
        if sizes[..i].iter().any(|&(s, _)| s == name) {
            return Err(fail(format!("`{name}` is given twice")));
        }
    }
    // The batch symbol may be left out: the figures are per sample, and the
    // shapes keep it as a symbol (`[B, 64, 128, 128]`).
    let batch = match spec.dims.first() {
        Some(InputDim::Sym(s)) => Some(*s),
        _ => None,
    };
    let keep_batch = batch.filter(|b| !sizes.iter().any(|(g, _)| g == b));
    if let Some(missing) = symbols
        .iter()
        .find(|s| !sizes.iter().any(|(g, _)| g == *s) && Some(**s) != keep_batch)
    {
        return Err(fail(format!("`{missing}` has no size")));
    }
    let size_of = |s: &str| sizes.iter().find(|(g, _)| *g == s).map(|&(_, n)| n);
    let shape: Vec<usize> = spec
        .dims
        .iter()
        .map(|d| match *d {
            InputDim::Fixed(n) => n,
            // A left-out batch is checked as 1.
            InputDim::Sym(s) | InputDim::Rule { sym: s, .. } => size_of(s).unwrap_or(1),
        })
        .collect();
    check_sizes(spec.network, spec.input, &shape, spec.dims)?;
    let size = |s: &str| size_of(s).map(|n| n as u64);
    let value = |layer: &str, what: &str, expr: &str| {
        eval(expr, &size).map_err(|e: EvalError| {
            fail(format!(
                "the {what} of `{layer}` is `{expr}`, which has no size here: {e}"
            ))
        })
    };
    let mut rows = Vec::with_capacity(spec.rows.len());
    for r in spec.rows {
        let op = fill(r.op, |e| value(r.layer, "op", e).map(|n| n.to_string()))?;
        let output = r
            .output
            .iter()
            .map(|e| match keep_batch {
                Some(b) if *e == b => Ok(b.to_string()),
                _ => value(r.layer, "output", e).map(|n| n.to_string()),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut macs = 0u64;
        for &(factor, dims) in r.macs {
            let mut term = factor;
            for e in dims {
                term = term.saturating_mul(value(r.layer, "MACs", e)?);
            }
            macs = macs.saturating_add(term);
        }
        rows.push(Row {
            layer: r.layer.to_string(),
            op,
            output: format!("[{}]", output.join(", ")),
            params: r.params,
            macs: Some(macs),
        });
    }
    let input: Vec<String> = shape
        .iter()
        .enumerate()
        .map(|(i, n)| match keep_batch {
            Some(b) if i == 0 => b.to_string(),
            _ => n.to_string(),
        })
        .collect();
    let input = format!("[{}]", input.join(", "));
    Ok(netdsl_summary::table(spec.network, &input, &rows) + spec.notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[B, 3, H, W]` through a 3x3 convolution without padding and a
    /// 2x2 pooling: `[B, 8, H - 2, W - 2]`, then `[B, 8, H/2 - 1, W/2 - 1]`.
    const SPEC: SummarySpec = SummarySpec {
        network: "Net",
        input: "[B, 3, H, W]",
        dims: &[
            InputDim::Sym("B"),
            InputDim::Fixed(3),
            InputDim::Rule {
                sym: "H",
                multiple: 2,
                residues: &[0],
                min: 4,
                multiple_why: "`pool`",
                min_why: "`pool`",
            },
            InputDim::Rule {
                sym: "W",
                multiple: 2,
                residues: &[0],
                min: 4,
                multiple_why: "`pool`",
                min_why: "`pool`",
            },
        ],
        rows: &[
            SummaryRow {
                layer: "conv",
                op: "Conv2d(3 -> 8, kernel 3)",
                output: &["B", "8", "H - 2", "W - 2"],
                params: 224,
                macs: &[(216, &["H - 2", "W - 2"])],
            },
            SummaryRow {
                layer: "pool",
                op: "MaxPool2d(2)",
                output: &["B", "8", "H/2 - 1", "W/2 - 1"],
                params: 0,
                macs: &[],
            },
            SummaryRow {
                layer: "crop",
                op: "CenterCrop({H/2 - 2} x {W/2 - 2})",
                output: &["B", "8", "H/2 - 2", "W/2 - 2"],
                params: 0,
                macs: &[],
            },
        ],
        notes: "",
        more: &[],
    };

    #[test]
    fn evaluates_every_size() {
        let s = summary_at(&SPEC, &[("B", 2), ("H", 10), ("W", 8)]).unwrap();
        assert!(
            s.starts_with("Net: input [2, 3, 10, 8], 224 trainable parameters"),
            "{s}"
        );
        assert!(s.contains("[2, 8, 8, 6]"), "{s}");
        assert!(s.contains("[2, 8, 4, 3]"), "{s}");
        assert!(s.contains("CenterCrop(3 x 2)"), "{s}");
        // 216 * 8 * 6
        assert!(s.contains("10,368  20,736"), "{s}");
    }

    #[test]
    fn names_what_is_wrong() {
        let e = |sizes: &[(&str, usize)]| summary_at(&SPEC, sizes).unwrap_err().to_string();
        let m = e(&[("B", 1), ("H", 10)]);
        assert!(m.contains("`W` has no size"), "{m}");
        assert!(
            m.contains("symbols of its input [B, 3, H, W] are B, H, W"),
            "{m}"
        );
        let m = e(&[("B", 1), ("H", 10), ("W", 8), ("C", 3)]);
        assert!(m.contains("`C` is not a symbol of the input"), "{m}");
        let m = e(&[("B", 1), ("H", 10), ("H", 12), ("W", 8)]);
        assert!(m.contains("`H` is given twice"), "{m}");
        let m = e(&[("B", 1), ("H", 11), ("W", 8)]);
        assert!(
            m.contains("dim 2 (`H`) is 11, but must be a multiple of 2"),
            "{m}"
        );
        let m = e(&[("B", 1), ("H", 2), ("W", 8)]);
        assert!(m.contains("must be at least 4"), "{m}");
    }
}
