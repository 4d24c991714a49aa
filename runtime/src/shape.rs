use candle_core::Tensor;

use crate::{Error, Result};

/// One axis of a network's declared input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputDim {
    /// A fixed size, checked exactly.
    Fixed(usize),
    /// A symbol (`B`): any size, but every axis with the same symbol must agree.
    Sym(&'static str),
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
    let got = x.dims();
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
        match *want {
            InputDim::Fixed(w) if g != w => {
                return Err(fail(format!("dim {axis} is {g}, expected {w}")));
            }
            InputDim::Sym(s) => {
                let first = dims.iter().position(|d| *d == InputDim::Sym(s));
                if let Some(first) = first.filter(|&f| f < axis && got[f] != g) {
                    return Err(fail(format!(
                        "dims {first} and {axis} are both `{s}` but are {} and {g}",
                        got[first]
                    )));
                }
            }
            InputDim::Fixed(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

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
