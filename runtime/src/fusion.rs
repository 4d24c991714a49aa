//! Inference fusions the generated code uses: batch norm folded into the
//! layer before it, computed once and cached until a source tensor changes.

use std::sync::RwLock;

use candle_core::{Tensor, TensorId};

use crate::layers::{BatchNormParams, MaybeTensor};
use crate::Result;

/// Batch norm in inference mode: `(x - running_mean) / sqrt(running_var + eps)
/// * weight + bias`, over dim 1 of a rank-2, 3 or 4 tensor.
pub fn batch_norm_eval<A: MaybeTensor>(
    x: &Tensor,
    bn: &BatchNormParams<A>,
    eps: f64,
) -> Result<Tensor> {
    let (scale, shift) = bn_scale_shift(bn, eps)?;
    let mut shape = vec![1usize; x.rank()];
    shape[1] = scale.dim(0)?;
    Ok(x.broadcast_mul(&scale.reshape(shape.as_slice())?)?
        .broadcast_add(&shift.reshape(shape.as_slice())?)?)
}

/// `scale = weight / sqrt(running_var + eps)`, `shift = bias - running_mean * scale`.
fn bn_scale_shift<A: MaybeTensor>(bn: &BatchNormParams<A>, eps: f64) -> Result<(Tensor, Tensor)> {
    // Inference only: detached, so no graph is kept.
    let inv_std = (bn.running_var.detach().affine(1.0, eps)?)
        .sqrt()?
        .recip()?;
    let scale = match bn.weight.tensor() {
        Some(w) => w.detach().mul(&inv_std)?,
        None => inv_std,
    };
    let shift = bn.running_mean.detach().mul(&scale)?.neg()?;
    let shift = match bn.bias.tensor() {
        Some(b) => shift.add(&b.detach())?,
        None => shift,
    };
    Ok((scale, shift))
}

/// Folds an inference-mode batch norm into the convolution or linear layer
/// before it: `W' = W * scale` (per output channel), `b' = b * scale + shift`.
pub fn bn_fold<B: MaybeTensor, A: MaybeTensor>(
    weight: &Tensor,
    bias: &B,
    bn: &BatchNormParams<A>,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let (scale, shift) = bn_scale_shift(bn, eps)?;
    let mut shape = vec![1usize; weight.rank()];
    shape[0] = scale.dim(0)?;
    let w = weight
        .detach()
        .broadcast_mul(&scale.reshape(shape.as_slice())?)?;
    let b = match bias.tensor() {
        Some(b) => b.detach().mul(&scale)?.add(&shift)?,
        None => shift,
    };
    Ok((w, b))
}

type Slot = RwLock<Option<(Vec<TensorId>, (Tensor, Tensor))>>;

/// The fused weights of one network: a switch, and one cached pair of
/// tensors per fold, recomputed when any tensor it was computed from is
/// replaced. (Tensors changed in place, as a training step does, keep their
/// id: call [`Fusion::clear`] after such a change.)
pub struct Fusion {
    enabled: bool,
    slots: Vec<Slot>,
}

impl Fusion {
    /// `folds` cached pairs, fusion on.
    pub fn new(folds: usize) -> Self {
        Self {
            enabled: true,
            slots: (0..folds).map(|_| RwLock::new(None)).collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Turns fusion on or off; off runs every layer as written.
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }

    /// Forgets every cached fold.
    pub fn clear(&self) {
        for slot in &self.slots {
            if let Ok(mut s) = slot.write() {
                *s = None;
            }
        }
    }

    /// The cached pair of fold `index`, computed by `compute` when absent or
    /// when `sources` are not the tensors it was computed from.
    pub fn get(
        &self,
        index: usize,
        sources: &[&Tensor],
        compute: impl FnOnce() -> Result<(Tensor, Tensor)>,
    ) -> Result<(Tensor, Tensor)> {
        let ids: Vec<TensorId> = sources.iter().map(|t| t.id()).collect();
        let Some(slot) = self.slots.get(index) else {
            return compute();
        };
        if let Ok(cached) = slot.read() {
            if let Some((k, v)) = cached.as_ref() {
                if *k == ids {
                    return Ok(v.clone());
                }
            }
        }
        let value = compute()?;
        if let Ok(mut s) = slot.write() {
            *s = Some((ids, value.clone()));
        }
        Ok(value)
    }
}

impl Clone for Fusion {
    /// A clone starts with an empty cache and the same switch.
    fn clone(&self) -> Self {
        let mut f = Self::new(self.slots.len());
        f.enabled = self.enabled;
        f
    }
}

impl std::fmt::Debug for Fusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fusion")
            .field("enabled", &self.enabled)
            .field("folds", &self.slots.len())
            .finish()
    }
}

/// ReLU6: `min(max(x, 0), 6)`.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    Ok(x.clamp(0f32, 6f32)?)
}

/// Hardswish: `x * relu6(x + 3) / 6`.
pub fn hardswish(x: &Tensor) -> Result<Tensor> {
    Ok(x.mul(&(x.affine(1.0, 3.0)?.clamp(0f32, 6f32)? / 6.0)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn fold_equals_conv_then_bn() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 6, 6), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 4, &dev).unwrap();
        let bn = BatchNormParams {
            weight: Tensor::randn(1f32, 0.2, 4, &dev).unwrap(),
            bias: Tensor::randn(0f32, 0.2, 4, &dev).unwrap(),
            running_mean: Tensor::randn(0f32, 0.5, 4, &dev).unwrap(),
            running_var: Tensor::rand(0.5f32, 1.5, 4, &dev).unwrap(),
            num_batches_tracked: Tensor::zeros((), DType::I64, &dev).unwrap(),
        };
        let plain = x.conv2d(&w, 1, 1, 1, 1).unwrap();
        let plain = plain
            .broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap())
            .unwrap();
        let plain = batch_norm_eval(&plain, &bn, 1e-5).unwrap();
        let (fw, fb) = bn_fold(&w, &b, &bn, 1e-5).unwrap();
        let fused = x.conv2d(&fw, 1, 1, 1, 1).unwrap();
        let fused = fused
            .broadcast_add(&fb.reshape((1, 4, 1, 1)).unwrap())
            .unwrap();
        let err: f32 = (plain - fused)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(err < 1e-4, "{err}");
    }

    #[test]
    fn cache_recomputes_when_a_source_is_replaced() {
        let dev = Device::Cpu;
        let a = Tensor::ones(2, DType::F32, &dev).unwrap();
        let f = Fusion::new(1);
        let mut calls = 0;
        let mut get = |t: &Tensor| {
            f.get(0, &[t], || {
                calls += 1;
                Ok((t.clone(), t.clone()))
            })
            .unwrap()
        };
        get(&a);
        get(&a);
        let b = Tensor::zeros(2, DType::F32, &dev).unwrap();
        get(&b);
        assert_eq!(calls, 2);
    }
}
