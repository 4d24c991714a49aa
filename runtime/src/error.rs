use std::fmt;
use std::path::PathBuf;

/// The result type of everything a generated network does at run time.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when a generated network is built, loaded, saved or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `forward` was given a tensor whose shape the network cannot take.
    #[error("`{network}` expects an input of shape {expected}, but was given {got:?}: {reason}")]
    InputShape {
        /// The network's name.
        network: &'static str,
        /// The declared input shape, as written in `network!`.
        expected: &'static str,
        /// The shape of the tensor that was passed.
        got: Vec<usize>,
        /// Which dim (or the rank) disagrees, in words.
        reason: String,
    },
    /// `forward` was given a tensor of a dtype the network does not run in.
    #[error("`{network}` runs in {expected:?}, but was given a {got:?} tensor; convert it with `.to_dtype(DType::{expected:?})`")]
    InputDType {
        network: &'static str,
        expected: candle_core::DType,
        got: candle_core::DType,
    },
    /// An optimiser step in which none of its variables received a
    /// gradient: the loss does not depend on them.
    #[error(
        "no parameter received a gradient ({vars} variables, none in the gradients): the loss does not \
         depend on them. A network in eval mode (the mode it starts in) uses its parameters detached; \
         call `train()` before the forward pass whose loss you step on"
    )]
    NoGradient {
        /// How many variables the optimiser holds.
        vars: usize,
    },
    /// A parameter source handed `from_source` a tensor that does not fit.
    #[error("`{network}`: the parameter source gave a bad tensor: {problem}")]
    Source {
        network: &'static str,
        problem: WeightProblem,
    },
    /// A weight file does not fit the network; every problem is listed.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A weight file could not be read or written.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A weight file is not valid safetensors (truncated, corrupt header, ..).
    #[error("`{}` is not a valid safetensors file: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A block struct was built or used inconsistently with its network.
    #[error("block `{block}`: {message}")]
    Block {
        block: &'static str,
        message: String,
    },
    /// An error from candle itself (device, dtype, an operation).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Every way a weight file disagrees with a network's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsError {
    /// The network being loaded.
    pub network: &'static str,
    /// The weight file.
    pub path: PathBuf,
    /// All problems found, in manifest order, then unexpected tensors by name.
    pub problems: Vec<WeightProblem>,
}

/// One disagreement between a weight file and a network's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightProblem {
    /// The network needs a tensor the file does not have.
    Missing { name: String, expected: Vec<usize> },
    /// The file has a tensor the network does not know.
    Unexpected { name: String, found: Vec<usize> },
    /// The tensor exists but has the wrong shape.
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The tensor exists but its dtype cannot be converted to the one needed.
    DType {
        name: String,
        expected: String,
        found: String,
    },
}

impl fmt::Display for WeightProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { name, expected } => {
                write!(f, "missing tensor `{name}` (expected shape {expected:?})")
            }
            Self::Unexpected { name, found } => {
                write!(f, "unexpected tensor `{name}` of shape {found:?} (the network has no such parameter)")
            }
            Self::Shape {
                name,
                expected,
                found,
            } => {
                write!(
                    f,
                    "tensor `{name}` has shape {found:?}, expected {expected:?}"
                )
            }
            Self::DType {
                name,
                expected,
                found,
            } => {
                write!(f, "tensor `{name}` has dtype {found}, expected {expected}")
            }
        }
    }
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "`{}` cannot load `{}`: {n} problem{}",
            self.network,
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for WeightsError {}
