use candle_core::Tensor;

use crate::{Error, Result};

/// One axis of a network's declared input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputDim {
    /// A fixed size, checked exactly.
    Fixed(usize),
    /// A symbol (`B`): any size, but every axis with the same symbol must agree.
    Sym(&'static str),
    /// A symbol the network's shapes need to be at least some size (every
    /// window an output), and, where a merge joins sizes that are equal
    /// only for some of its values (a U-Net's skip and its upsampling:
    /// `H/8` and `2*(H/16)`), one of those: `size % multiple` in
    /// `residues` (`&[0]`: a multiple). Each with the layer that needs it.
    Rule {
        sym: &'static str,
        multiple: usize,
        residues: &'static [usize],
        min: usize,
        multiple_why: &'static str,
        min_why: &'static str,
    },
}

impl InputDim {
    fn sym(&self) -> Option<&'static str> {
        match *self {
            InputDim::Sym(s) | InputDim::Rule { sym: s, .. } => Some(s),
            InputDim::Fixed(_) => None,
        }
    }
}

/// Checks `x` against a network's declared input shape before `forward`
/// touches it, and returns a typed error naming the network, the expected
/// and the given shape.
pub fn check_input(
    network: &'static str,
    expected: &'static str,
    x: &Tensor,
    dims: &[InputDim],
) -> Result<()> {
    if x.dtype() != candle_core::DType::F32 {
        return Err(Error::InputDType {
            network,
            expected: candle_core::DType::F32,
            got: x.dtype(),
        });
    }
    check_dims(network, expected, x, dims)
}

/// Two inputs of a network that share the symbol `sym` (`B` in `x: [B, T,
/// 8]` and `lengths: [B]`) must have one size for it.
pub fn check_same_size(
    network: &'static str,
    sym: &'static str,
    (first, first_size): (&'static str, usize),
    (second, second_size): (&'static str, usize),
) -> Result<()> {
    if first_size == second_size {
        return Ok(());
    }
    Err(Error::InputsDisagree {
        network,
        sym,
        first,
        first_size,
        second,
        second_size,
    })
}

/// [`check_input`] for a network whose input is token ids of dtype `dtype`
/// (`ids: [B, T] u32`): the dtype must be that one, the shape as declared.
/// The ids' range is checked by the `Embedding` that reads them.
pub fn check_token_input(
    network: &'static str,
    expected: &'static str,
    dtype: candle_core::DType,
    x: &Tensor,
    dims: &[InputDim],
) -> Result<()> {
    if x.dtype() != dtype {
        return Err(Error::InputIdsDType {
            network,
            expected: dtype,
            got: x.dtype(),
        });
    }
    check_dims(network, expected, x, dims)
}

fn check_dims(
    network: &'static str,
    expected: &'static str,
    x: &Tensor,
    dims: &[InputDim],
) -> Result<()> {
    crate::debug_build::warn_if_unoptimized(network, x.elem_count());
    check_sizes(network, expected, x.dims(), dims)
}

/// Checks an input shape `got` against a network's declared input dims:
/// what `forward` checks of its input's shape, and `summary_at` of the
/// sizes it is given.
pub(crate) fn check_sizes(
    network: &'static str,
    expected: &'static str,
    got: &[usize],
    dims: &[InputDim],
) -> Result<()> {
    let fail = |reason: String| Error::InputShape {
        network,
        expected,
        got: got.to_vec(),
        reason,
    };
    if got.len() != dims.len() {
        return Err(fail(format!(
            "rank {} given, rank {} expected",
            got.len(),
            dims.len()
        )));
    }
    for (axis, (&g, want)) in got.iter().zip(dims).enumerate() {
        if let InputDim::Fixed(w) = *want {
            if g != w {
                return Err(fail(format!("dim {axis} is {g}, expected {w}")));
            }
            continue;
        }
        let Some(s) = want.sym() else { continue };
        let first = dims.iter().position(|d| d.sym() == Some(s));
        if let Some(first) = first.filter(|&f| f < axis && got[f] != g) {
            return Err(fail(format!(
                "dims {first} and {axis} are both `{s}` but are {} and {g}",
                got[first]
            )));
        }
        if let InputDim::Rule {
            multiple,
            residues,
            min,
            multiple_why,
            min_why,
            ..
        } = *want
        {
            if g < min {
                return Err(fail(format!(
                    "dim {axis} (`{s}`) is {g}, but must be at least {min}: {min_why} needs it"
                )));
            }
            let allowed = |v: usize| multiple <= 1 || residues.contains(&(v % multiple));
            if !allowed(g) {
                // The nearest allowed sizes below (not under `min`) and above.
                let below = (min.max(1)..g).rev().find(|&v| allowed(v));
                let above = (g + 1..=g + multiple).find(|&v| allowed(v));
                let near = match (below, above) {
                    (Some(lo), Some(hi)) => format!("{lo} or {hi}"),
                    (None, Some(hi)) => hi.to_string(),
                    (Some(lo), None) => lo.to_string(),
                    (None, None) => String::from("another size"),
                };
                let what = if residues == [0] {
                    format!("a multiple of {multiple}")
                } else {
                    let rs: Vec<String> = residues.iter().map(usize::to_string).collect();
                    format!("{} modulo {multiple}", rs.join(", "))
                };
                return Err(fail(format!(
                    "dim {axis} (`{s}`) is {g}, but must be {what} ({g} % {multiple} = {}): \
                     {multiple_why} needs equal sizes, which it has only then; try {near}",
                    g % multiple
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn rules_name_the_layer_and_a_size_that_works() {
        let dims = [
            InputDim::Sym("B"),
            InputDim::Fixed(1),
            InputDim::Rule {
                sym: "H",
                multiple: 16,
                residues: &[0],
                min: 16,
                multiple_why: "`down4`",
                min_why: "`down4`",
            },
        ];
        let check = |shape: &[usize]| {
            let x = Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
            check_input("UNet", "[B, 1, H]", &x, &dims)
        };
        assert!(check(&[2, 1, 64]).is_ok());
        let e = check(&[2, 1, 70]).unwrap_err().to_string();
        assert!(
            e.contains("dim 2 (`H`) is 70, but must be a multiple of 16 (70 % 16 = 6): `down4` needs equal sizes, which it has only then; try 64 or 80"),
            "{e}"
        );
        let e = check(&[2, 1, 8]).unwrap_err().to_string();
        assert!(
            e.contains("dim 2 (`H`) is 8, but must be at least 16: `down4` needs it"),
            "{e}"
        );
        // Sizes equal only in the lower half of each 16 (`H/8` and
        // `2*(H/16)`).
        let dims = [InputDim::Rule {
            sym: "H",
            multiple: 16,
            residues: &[0, 1, 2, 3, 4, 5, 6, 7],
            min: 2,
            multiple_why: "the `cat` of `up` and `skip`",
            min_why: "`pool`",
        }];
        let x = |h: usize| Tensor::zeros(h, DType::F32, &Device::Cpu).unwrap();
        for h in [2, 7, 16, 23, 100 - 4] {
            check_input("UNet", "[H]", &x(h), &dims).unwrap();
        }
        let e = check_input("UNet", "[H]", &x(12), &dims)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dim 0 (`H`) is 12, but must be 0, 1, 2, 3, 4, 5, 6, 7 modulo 16 (12 % 16 = 12): the `cat` of `up` and `skip` needs equal sizes, which it has only then; try 7 or 16"),
            "{e}"
        );
    }

    const DIMS: [InputDim; 4] = [
        InputDim::Sym("B"),
        InputDim::Fixed(1),
        InputDim::Sym("N"),
        InputDim::Sym("N"),
    ];

    fn check(shape: &[usize]) -> Result<()> {
        let x = Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        check_input("Net", "[B, 1, N, N]", &x, &DIMS)
    }

    #[test]
    fn accepts_and_rejects() {
        check(&[3, 1, 8, 8]).unwrap();
        let e = check(&[3, 1, 8]).unwrap_err().to_string();
        assert!(e.contains("rank 3 given, rank 4 expected"), "{e}");
        let e = check(&[3, 2, 8, 8]).unwrap_err().to_string();
        assert!(e.contains("dim 1 is 2, expected 1"), "{e}");
        assert!(
            e.contains("`Net` expects an input of shape [B, 1, N, N]"),
            "{e}"
        );
        let f64s = Tensor::zeros((3, 1, 8, 8), DType::F64, &Device::Cpu).unwrap();
        let e = check_input("Net", "[B, 1, N, N]", &f64s, &DIMS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("runs in F32, but was given a F64 tensor"), "{e}");
        let e = check(&[3, 1, 8, 9]).unwrap_err().to_string();
        assert!(
            e.contains("dims 2 and 3 are both `N` but are 8 and 9"),
            "{e}"
        );
    }
}
