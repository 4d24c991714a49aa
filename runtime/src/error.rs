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
    /// `summary_at` was given sizes that are not one for each symbol of the
    /// network's input. (Sizes the network's shapes cannot take are
    /// [`Error::InputShape`], as `forward` reports them.)
    #[error(
        "`{network}::summary_at` takes one size for each symbol of the input; the symbols of its input \
         {input} are {}, but was given [{}]: {reason}",
        symbols.join(", "),
        given.iter().map(|(s, n)| format!("{s} = {n}")).collect::<Vec<_>>().join(", ")
    )]
    SummarySizes {
        /// The network's name.
        network: &'static str,
        /// The declared input shape, as written in `network!`.
        input: &'static str,
        /// The input's symbols, each of which needs a size.
        symbols: Vec<&'static str>,
        /// The sizes that were given.
        given: Vec<(String, usize)>,
        /// What is wrong with them, in words.
        reason: String,
    },
    /// `forward` was given a tensor of a dtype the network does not run in.
    #[error("`{network}` runs in {expected:?}, but was given a {got:?} tensor; convert it with `.to_dtype(DType::{expected:?})`")]
    InputDType {
        network: &'static str,
        expected: candle_core::DType,
        got: candle_core::DType,
    },
    /// `forward` of a network whose input is token ids was given a tensor
    /// of another dtype.
    #[error("`{network}` takes token ids of dtype {expected:?}, but was given a {got:?} tensor; convert it with `.to_dtype(DType::{expected:?})`")]
    InputIdsDType {
        network: &'static str,
        expected: candle_core::DType,
        got: candle_core::DType,
    },
    /// An `Embedding` was given an id outside its vocabulary.
    #[error("`{layer}`: token id {id} at position {position:?} is outside the vocabulary of {vocab} (ids run from 0 to {})", vocab.saturating_sub(1))]
    TokenId {
        /// The `Embedding` layer.
        layer: &'static str,
        /// Where the id sits in the ids tensor.
        position: Vec<usize>,
        id: i64,
        vocab: usize,
    },
    /// An `Embedding` was given a tensor that does not hold integer ids.
    #[error("`{layer}` looks up integer token ids, but was given a {got:?} tensor")]
    TokenDType {
        layer: &'static str,
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
    /// A weight file is malformed (truncated, a header longer than the
    /// file, overlapping or out-of-range offsets, an unknown dtype, a byte
    /// length that disagrees with the shape) or, when the check was asked
    /// for, holds a NaN or an infinity. Nothing was loaded.
    #[error("`{}` cannot be loaded: {problem}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor where there is one.
        problem: FileProblem,
    },
    /// A checkpoint file is valid safetensors but not a netdsl checkpoint, or
    /// a file could not be serialised.
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
    /// A block built alone (`BasicBlock::new(source, C, out, stride)`) with
    /// values none of its uses has: its code is compiled, and its shapes
    /// checked, for the uses in its `network!` invocation.
    #[error(
        "block `{block}` is compiled for its uses in its `network!` invocation, and none has {got}; \
         it is compiled for: {}. Use the block with these values in a network of that invocation \
         (where they are shape-checked) to build it alone with them",
        compiled.join("; ")
    )]
    BlockConfiguration {
        /// The block's struct.
        block: &'static str,
        /// The values asked for (`C = 3, out = 8, stride = 2`).
        got: String,
        /// The values of its uses, one entry per configuration.
        compiled: &'static [&'static str],
    },
    /// Two inputs of a network disagree on a size they share by name.
    #[error("`{network}`: inputs `{first}` and `{second}` must agree on `{sym}`, but it is {first_size} in `{first}` and {second_size} in `{second}`")]
    InputsDisagree {
        network: &'static str,
        sym: &'static str,
        first: &'static str,
        first_size: usize,
        second: &'static str,
        second_size: usize,
    },
    /// A layer was given inputs it cannot take (a recurrent layer's
    /// initial states or lengths of the wrong shape, say).
    #[error("`{layer}` {message}")]
    Layer {
        layer: &'static str,
        message: String,
    },
    /// An error from candle itself (device, dtype, an operation).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// What makes a safetensors file unreadable. Every variant about one tensor
/// names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FileProblem {
    /// Fewer than the 8 bytes that hold the header's length.
    #[error("the file has {len} bytes, fewer than the 8 that hold the header length")]
    TooShort { len: u64 },
    /// The header's length points past the end of the file.
    #[error("the header claims {header_len} bytes, but only {available} follow its length (truncated file?)")]
    HeaderPastEnd { header_len: u64, available: u64 },
    /// The header is not the JSON object safetensors specifies.
    #[error("the header is not valid: {message}")]
    Header { message: String },
    /// One tensor's header entry lacks a field or has one of the wrong type.
    #[error("tensor `{tensor}`: malformed header entry: {message}")]
    Entry { tensor: String, message: String },
    /// A dtype safetensors does not define.
    #[error("tensor `{tensor}` has the unknown dtype `{dtype}`")]
    UnknownDType { tensor: String, dtype: String },
    /// `data_offsets` span a number of bytes other than the shape needs.
    #[error("tensor `{tensor}` is {dtype} of shape {shape:?}, which needs {expected} bytes, but its offsets span {found}")]
    ByteLength {
        tensor: String,
        dtype: String,
        shape: Vec<usize>,
        expected: u64,
        found: u64,
    },
    /// The offsets are reversed or lie beyond the file's data section while
    /// the rest of the header is consistent with the file's length.
    #[error("tensor `{tensor}` has data offsets [{start}, {end}), outside the {data_len} bytes of tensor data")]
    OffsetOutOfRange {
        tensor: String,
        start: u64,
        end: u64,
        data_len: u64,
    },
    /// The header lays the tensors out back to back, but the file ends
    /// before this one does: the file was cut short.
    #[error("the file is truncated: tensor `{tensor}` needs bytes up to {end} of the tensor data, but only {data_len} are there")]
    Truncated {
        tensor: String,
        end: u64,
        data_len: u64,
    },
    /// Two tensors' byte ranges overlap.
    #[error("tensors `{tensor}` and `{other}` overlap: [{start}, {end}) and [{other_start}, {other_end})")]
    Overlap {
        tensor: String,
        start: u64,
        end: u64,
        other: String,
        other_start: u64,
        other_end: u64,
    },
    /// A loaded weight holds NaN or an infinity (only with
    /// `LoadOptions::check_finite`); `index` is the flat, row-major index.
    #[error("tensor `{tensor}` holds {value} at flat index {index}")]
    NonFinite {
        tensor: String,
        index: usize,
        value: f64,
    },
}

impl FileProblem {
    /// The tensor the problem is about, if it is about one.
    pub fn tensor(&self) -> Option<&str> {
        match self {
            Self::TooShort { .. } | Self::HeaderPastEnd { .. } | Self::Header { .. } => None,
            Self::Entry { tensor, .. }
            | Self::UnknownDType { tensor, .. }
            | Self::ByteLength { tensor, .. }
            | Self::OffsetOutOfRange { tensor, .. }
            | Self::Truncated { tensor, .. }
            | Self::Overlap { tensor, .. }
            | Self::NonFinite { tensor, .. } => Some(tensor),
        }
    }
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
    /// Several of the file's keys map to this name after remapping.
    Duplicate { name: String, keys: Vec<String> },
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
            Self::Duplicate { name, keys } => {
                write!(f, "`{name}` is given by several keys after remapping: ")?;
                for (i, k) in keys.iter().enumerate() {
                    write!(f, "{}`{k}`", if i == 0 { "" } else { ", " })?;
                }
                Ok(())
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
