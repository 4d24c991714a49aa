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
