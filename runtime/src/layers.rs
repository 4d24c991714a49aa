//! The parameter holders of generated networks: one per parameterised layer,
//! with PyTorch's parameter names and layouts as fields.

use candle_core::Tensor;

/// The `bias` of a layer built with `bias = false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoBias;

/// A 2-D convolution's parameters: `weight` is `[out, in / groups, kh, kw]`,
/// `bias` is `[out]` (or [`NoBias`]).
#[derive(Debug, Clone)]
pub struct Conv2dParams<B = Tensor> {
    pub weight: Tensor,
    pub bias: B,
}

/// A fully connected layer's parameters: `weight` is `[out, in]`, `bias` is
/// `[out]` (or [`NoBias`]).
#[derive(Debug, Clone)]
pub struct LinearParams<B = Tensor> {
    pub weight: Tensor,
    pub bias: B,
}

/// A token embedding's table: `weight` is `[vocab, dim]`.
#[derive(Debug, Clone)]
pub struct EmbeddingParams {
    pub weight: Tensor,
}

/// Batch normalisation's parameters and buffers, PyTorch's names:
/// `weight` and `bias` are `[C]` (or [`NoBias`] with `affine = false`),
/// `running_mean`, `running_var` are `[C]`, `num_batches_tracked` is an i64
/// scalar.
#[derive(Debug, Clone)]
pub struct BatchNormParams<A = Tensor> {
    pub weight: A,
    pub bias: A,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
}

/// Layer normalisation's parameters, PyTorch's names: `weight` and `bias`
/// of the normalised shape (`bias` [`NoBias`] with `bias = false`).
#[derive(Debug, Clone)]
pub struct LayerNormParams<B = Tensor> {
    pub weight: Tensor,
    pub bias: B,
}

/// RMS normalisation's parameter: `weight` of the normalised shape.
#[derive(Debug, Clone)]
pub struct RmsNormParams {
    pub weight: Tensor,
}

/// `nn.MultiheadAttention`'s parameters, PyTorch's names and layout:
/// `in_proj_weight` `[3E, E]` (the query, key and value projections stacked
/// in that order), `in_proj_bias` `[3E]`, and the output projection
/// `out_proj` (`weight` `[E, E]`, `bias` `[E]`). Without bias both biases
/// are [`NoBias`].
#[derive(Debug, Clone)]
pub struct MultiheadAttentionParams<B = Tensor> {
    pub in_proj_weight: Tensor,
    pub in_proj_bias: B,
    pub out_proj: LinearParams<B>,
}

/// `nn.MultiheadAttention(E, heads, kdim=K, vdim=V)`'s parameters when the
/// keys or values have another width than the queries: PyTorch then keeps
/// the three projections apart, `q_proj_weight` `[E, E]`, `k_proj_weight`
/// `[E, K]`, `v_proj_weight` `[E, V]`, with one `in_proj_bias` `[3E]` and
/// `out_proj`.
#[derive(Debug, Clone)]
pub struct MultiheadAttentionKvParams<B = Tensor> {
    pub q_proj_weight: Tensor,
    pub k_proj_weight: Tensor,
    pub v_proj_weight: Tensor,
    pub in_proj_bias: B,
    pub out_proj: LinearParams<B>,
}

pub use crate::rnn::RnnParams;

/// Multi-head attention as timm's `Attention` names it (`layout = timm`):
/// `qkv` (`weight` `[3E, E]`, Q, K and V stacked as in `in_proj_weight`)
/// and the output projection `proj`.
#[derive(Debug, Clone)]
pub struct QkvAttentionParams<B = Tensor> {
    pub qkv: LinearParams<B>,
    pub proj: LinearParams<B>,
}

/// Multi-head attention with separate projections as Hugging Face names
/// them in CLIP, BART, Whisper or OPT (`layout = hf`): `q_proj`, `k_proj`,
/// `v_proj` (each `[E, E]`) and `out_proj`.
#[derive(Debug, Clone)]
pub struct SeparateQkvAttentionParams<B = Tensor> {
    pub q_proj: LinearParams<B>,
    pub k_proj: LinearParams<B>,
    pub v_proj: LinearParams<B>,
    pub out_proj: LinearParams<B>,
}

/// A tensor that may be absent: [`Tensor`] or [`NoBias`].
pub trait MaybeTensor {
    fn tensor(&self) -> Option<&Tensor>;
}

impl MaybeTensor for Tensor {
    fn tensor(&self) -> Option<&Tensor> {
        Some(self)
    }
}

impl MaybeTensor for NoBias {
    fn tensor(&self) -> Option<&Tensor> {
        None
    }
}
