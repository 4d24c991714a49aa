//! Batch norm, as PyTorch runs it in training (batch statistics, running
//! statistics updated in place) and inference (running statistics), and
//! the inference fusion the generated code uses: batch norm folded into the
//! layer before it, computed once and cached until a source tensor changes.

use std::sync::RwLock;

use candle_core::{DType, Tensor, TensorId, Var};

use crate::conv::PreparedConv;
use crate::layers::{BatchNormParams, MaybeTensor};
use crate::linear::PreparedLinear;
use crate::Result;

/// Batch norm as PyTorch runs it. Training: normalise with the batch's
/// mean and biased variance over every dim but 1, and update the running
/// statistics in place (`running = (1 - momentum) * running + momentum *
/// batch`, the variance unbiased) and `num_batches_tracked`. Inference: the
/// running statistics.
pub fn batch_norm<A: MaybeTensor>(
    x: &Tensor,
    bn: &BatchNormParams<A>,
    eps: f64,
    momentum: f64,
    training: bool,
) -> Result<Tensor> {
    if !training {
        return crate::batch_norm_eval(x, bn, eps);
    }
    let c = x.dim(1)?;
    let n = x.elem_count() / c;
    if x.dtype() == DType::F32 && x.device().is_cpu() {
        return batch_norm_train_cpu(x, bn, eps, momentum, c, n);
    }
    let dims: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
    let mut shape = vec![1usize; x.rank()];
    shape[1] = c;
    let mean = x.mean_keepdim(dims.as_slice())?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(dims.as_slice())?;
    let y = centered.broadcast_div(&var.affine(1.0, eps)?.sqrt()?)?;
    let y = match (bn.weight.tensor(), bn.bias.tensor()) {
        (Some(w), Some(b)) => y
            .broadcast_mul(&w.reshape(shape.as_slice())?)?
            .broadcast_add(&b.reshape(shape.as_slice())?)?,
        _ => y,
    };
    update_running(
        bn,
        &mean.detach().flatten_all()?,
        &var.detach().flatten_all()?,
        momentum,
        n,
    )?;
    Ok(y)
}

/// Batch norm in training on f32 CPU data: the statistics and the
/// normalisation as one custom op with its own backward pass
/// ([`crate::norm_kernel`]), the running statistics updated as PyTorch does.
fn batch_norm_train_cpu<A: MaybeTensor>(
    x: &Tensor,
    bn: &BatchNormParams<A>,
    eps: f64,
    momentum: f64,
    c: usize,
    n: usize,
) -> Result<Tensor> {
    let x = x.contiguous()?;
    let dims = x.dims().to_vec();
    let (mean, var) = crate::host::with_f32(&x, |xv| crate::norm_kernel::channel_stats(xv, &dims))
        .ok_or_else(|| candle_core::Error::Msg("batch_norm: f32 CPU data expected".into()))?;
    let invstd: Vec<f32> = var
        .iter()
        .map(|v| 1.0 / (*v as f64 + eps).sqrt() as f32)
        .collect();
    let dev = x.device();
    let (weight, bias) = match (bn.weight.tensor(), bn.bias.tensor()) {
        (Some(w), Some(b)) => (w.clone(), b.clone()),
        _ => (
            Tensor::ones(c, DType::F32, dev)?,
            Tensor::zeros(c, DType::F32, dev)?,
        ),
    };
    let op = crate::norm_kernel::BnTrain {
        mean: std::sync::Arc::new(mean.clone()),
        invstd: std::sync::Arc::new(invstd),
    };
    let y = x.apply_op3(&weight, &bias, op)?;
    let mean = Tensor::from_vec(mean, c, dev)?;
    let var = Tensor::from_vec(var, c, dev)?;
    update_running(bn, &mean, &var, momentum, n)?;
    Ok(y)
}

/// The running statistics (no gradient, updated in place) from the batch's
/// mean and biased variance over `n` values per channel, and
/// `num_batches_tracked`.
fn update_running<A: MaybeTensor>(
    bn: &BatchNormParams<A>,
    mean: &Tensor,
    var: &Tensor,
    momentum: f64,
    n: usize,
) -> Result<()> {
    let unbiased = var.affine(n as f64 / (n.max(2) - 1) as f64, 0.0)?;
    let rm = bn.running_mean.detach();
    let rv = bn.running_var.detach();
    let new_mean = rm
        .affine(1.0 - momentum, 0.0)?
        .add(&mean.affine(momentum, 0.0)?)?;
    let new_var = rv
        .affine(1.0 - momentum, 0.0)?
        .add(&unbiased.affine(momentum, 0.0)?)?;
    set_in_place(&bn.running_mean, &new_mean)?;
    set_in_place(&bn.running_var, &new_var)?;
    let count = bn.num_batches_tracked.detach();
    let one = Tensor::ones((), count.dtype(), count.device())?;
    set_in_place(&bn.num_batches_tracked, &count.add(&one)?)?;
    Ok(())
}

/// Writes `value` into the storage of `target` (a variable) in place.
fn set_in_place(target: &Tensor, value: &Tensor) -> Result<()> {
    if target.is_variable() {
        Var::from_tensor(target)?.set(value)?;
        Ok(())
    } else {
        Err(candle_core::Error::Msg(
            "batch norm statistics must be variables to be updated in training; \
             build the network with new/load/from_source"
                .into(),
        )
        .into())
    }
}

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

/// What one slot caches: a folded pair, a convolution's prepared weights,
/// or a linear layer's.
#[derive(Clone)]
enum Cached {
    Pair(Tensor, Tensor),
    Conv(PreparedConv),
    Linear(PreparedLinear),
    Lstm(crate::lstm_step::LstmPacks),
}

impl Cached {
    /// What the slot holds, for the error when two layers share a slot.
    fn kind(&self) -> &'static str {
        match self {
            Cached::Pair(..) => "a folded pair",
            Cached::Conv(_) => "a prepared convolution",
            Cached::Linear(_) => "a prepared linear layer",
            Cached::Lstm(_) => "a recurrent layer's packed weights",
        }
    }
}

type Slot = RwLock<Option<(Vec<TensorId>, Cached)>>;

/// The fused weights of one network: a switch, and one cached value per
/// fold or prepared convolution, recomputed when any tensor it was computed
/// from is replaced. (Tensors changed in place, as a training step does,
/// keep their id: call [`Fusion::clear`] after such a change.)
pub struct Fusion {
    enabled: bool,
    slots: Vec<Slot>,
}

impl Fusion {
    /// `folds` cache slots, fusion on. Every generated network and block
    /// builds its `Fusion` when it is built, so this is also where the
    /// process keeps freed tensor memory from then on
    /// ([`crate::keep_freed_memory`]).
    pub fn new(folds: usize) -> Self {
        crate::malloc::keep_freed_memory();
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

    /// The value of slot `index` computed from `sources`: cached while
    /// every source is the same tensor, else recomputed by `compute`.
    fn cached(
        &self,
        index: usize,
        sources: &[&Tensor],
        compute: impl FnOnce() -> Result<Cached>,
    ) -> Result<Cached> {
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

    /// The pair of slot `index` (a folded weight and bias), computed from
    /// `sources` by `compute` when they changed.
    pub fn get(
        &self,
        index: usize,
        sources: &[&Tensor],
        compute: impl FnOnce() -> Result<(Tensor, Tensor)>,
    ) -> Result<(Tensor, Tensor)> {
        match self.cached(index, sources, || {
            compute().map(|(a, b)| Cached::Pair(a, b))
        })? {
            Cached::Pair(a, b) => Ok((a, b)),
            other => Err(slot_kind(index, other.kind())),
        }
    }

    /// The prepared convolution of slot `index` ([`crate::prepare_conv`] of its
    /// weights, folded or not), computed from `sources` by `compute` when
    /// they changed.
    pub fn get_conv(
        &self,
        index: usize,
        sources: &[&Tensor],
        compute: impl FnOnce() -> Result<PreparedConv>,
    ) -> Result<PreparedConv> {
        match self.cached(index, sources, || compute().map(Cached::Conv))? {
            Cached::Conv(c) => Ok(c),
            other => Err(slot_kind(index, other.kind())),
        }
    }

    /// The prepared linear layer of slot `index` ([`crate::prepare_linear`]
    /// of its weights), made from `sources` by `compute` when they changed.
    pub fn get_linear(
        &self,
        index: usize,
        sources: &[&Tensor],
        compute: impl FnOnce() -> Result<PreparedLinear>,
    ) -> Result<PreparedLinear> {
        match self.cached(index, sources, || compute().map(Cached::Linear))? {
            Cached::Linear(l) => Ok(l),
            other => Err(slot_kind(index, other.kind())),
        }
    }
}

impl Fusion {
    /// The packed weights of the recurrent layer of slot `index`, made
    /// from `sources` (its `weight_ih` and `weight_hh` tensors): an empty
    /// store when they changed, filled by the layer as it runs.
    pub(crate) fn get_lstm(
        &self,
        index: usize,
        sources: &[&Tensor],
    ) -> Result<crate::lstm_step::LstmPacks> {
        match self.cached(index, sources, || Ok(Cached::Lstm(Default::default())))? {
            Cached::Lstm(p) => Ok(p),
            other => Err(slot_kind(index, other.kind())),
        }
    }
}

/// A slot asked for one kind of value while it holds the other: two layers
/// were given the same slot, which the compiler never does.
fn slot_kind(index: usize, holds: &str) -> crate::Error {
    candle_core::Error::Msg(format!(
        "fusion slot {index} holds {holds}, not what was asked"
    ))
    .into()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::make_var;
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

    #[test]
    fn training_batch_norm_updates_running_stats() {
        let dev = Device::Cpu;
        let bn = BatchNormParams {
            weight: make_var(Tensor::ones(2, DType::F32, &dev).unwrap()).unwrap(),
            bias: make_var(Tensor::zeros(2, DType::F32, &dev).unwrap()).unwrap(),
            running_mean: make_var(Tensor::zeros(2, DType::F32, &dev).unwrap()).unwrap(),
            running_var: make_var(Tensor::ones(2, DType::F32, &dev).unwrap()).unwrap(),
            num_batches_tracked: make_var(Tensor::zeros((), DType::I64, &dev).unwrap()).unwrap(),
        };
        // channel 0: values 1, 3 (mean 2, biased var 1, unbiased 2);
        // channel 1: values 0, 2 (mean 1, biased var 1, unbiased 2)
        let x = Tensor::new(&[[1f32, 0.], [3., 2.]], &dev).unwrap();
        let y = batch_norm(&x, &bn, 0.0, 0.1, true).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), [[-1.0, -1.0], [1.0, 1.0]]);
        let rm: Vec<f32> = bn.running_mean.to_vec1().unwrap();
        let rv: Vec<f32> = bn.running_var.to_vec1().unwrap();
        // 0.9 * 0 + 0.1 * 2 = 0.2 and 0.1; 0.9 * 1 + 0.1 * 2 = 1.1
        assert!(
            (rm[0] - 0.2).abs() < 1e-6 && (rm[1] - 0.1).abs() < 1e-6,
            "{rm:?}"
        );
        assert!(
            (rv[0] - 1.1).abs() < 1e-6 && (rv[1] - 1.1).abs() < 1e-6,
            "{rv:?}"
        );
        assert_eq!(bn.num_batches_tracked.to_scalar::<i64>().unwrap(), 1);
    }
}
