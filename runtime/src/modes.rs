//! Training and inference modes: what a generated `forward` calls so that
//! the same code trains (gradients flow into the parameters, dropout and
//! batch statistics are live) and infers (parameters detached, no graph
//! kept, running statistics, dropout off).

use std::sync::Mutex;

use candle_core::{Tensor, Var};

use crate::layers::{BatchNormParams, MaybeTensor};
use crate::{Result, Rng};

/// A parameter as `forward` uses it: the tracked variable while training,
/// a detached view of the same storage otherwise (no copy).
pub fn param(t: &Tensor, training: bool) -> Tensor {
    if training {
        t.clone()
    } else {
        t.detach()
    }
}

/// `t` as a candle variable (copied once if it is not one already), so
/// optimisers can update it in place and gradients reach it.
pub fn make_var(t: Tensor) -> Result<Tensor> {
    if t.is_variable() {
        return Ok(t);
    }
    Ok(Var::from_tensor(&t)?.as_tensor().clone())
}

/// The variable behind a field (shares its storage).
pub fn var_of(t: &mut Tensor) -> Result<Var> {
    if !t.is_variable() {
        *t = make_var(t.clone())?;
    }
    Ok(Var::from_tensor(t)?)
}

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
    let dims: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
    let n = x.elem_count() / c;
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
    // Running statistics: no gradient, updated in place.
    let (mean, var) = (mean.detach().flatten_all()?, var.detach().flatten_all()?);
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
    Ok(y)
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

/// The seeded generator behind dropout masks, shared by `&self` forwards.
#[derive(Debug)]
pub struct Generator(Mutex<Rng>);

impl Generator {
    pub fn seeded(seed: u64) -> Self {
        Self(Mutex::new(Rng::stream(seed, "dropout")))
    }

    pub fn from_entropy() -> Self {
        Self::seeded(Rng::entropy_seed())
    }

    pub fn reseed(&self, seed: u64) {
        self.replace(Rng::stream(seed, "dropout"));
    }

    /// The generator's state, for checkpoints.
    pub fn state(&self) -> [u8; 56] {
        match self.0.lock() {
            Ok(r) => r.state(),
            Err(poisoned) => poisoned.into_inner().state(),
        }
    }

    pub fn set_state(&self, state: &[u8; 56]) {
        self.replace(Rng::from_state(state));
    }

    fn replace(&self, rng: Rng) {
        match self.0.lock() {
            Ok(mut r) => *r = rng,
            Err(poisoned) => *poisoned.into_inner() = rng,
        }
    }

    pub(crate) fn uniform(&self, n: usize) -> Vec<f32> {
        match self.0.lock() {
            Ok(mut r) => r.uniform_vec(n, 0.0, 1.0),
            Err(poisoned) => poisoned.into_inner().uniform_vec(n, 0.0, 1.0),
        }
    }
}

impl Clone for Generator {
    fn clone(&self) -> Self {
        Self(Mutex::new(Rng::from_state(&self.state())))
    }
}

/// Inverted dropout as PyTorch's: each value is zeroed with probability
/// `p`, the others scaled by `1 / (1 - p)`; the mask comes from the seeded
/// generator, so a seeded run is reproducible.
pub fn dropout(x: &Tensor, p: f64, rng: &Generator) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        return Ok(x.zeros_like()?);
    }
    let keep = 1.0 - p;
    let mask: Vec<f32> = rng
        .uniform(x.elem_count())
        .into_iter()
        .map(|u| {
            if (u as f64) < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), &candle_core::Device::Cpu)?
        .to_dtype(x.dtype())?
        .to_device(x.device())?;
    Ok(x.mul(&mask)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn dropout_is_seeded_scaled_and_about_p() {
        let x = Tensor::ones(10_000, DType::F32, &Device::Cpu).unwrap();
        let a = dropout(&x, 0.3, &Generator::seeded(1)).unwrap();
        let b = dropout(&x, 0.3, &Generator::seeded(1)).unwrap();
        let va: Vec<f32> = a.to_vec1().unwrap();
        assert_eq!(va, b.to_vec1::<f32>().unwrap());
        let zeros = va.iter().filter(|v| **v == 0.0).count() as f64 / va.len() as f64;
        assert!((zeros - 0.3).abs() < 0.02, "{zeros}");
        assert!(va
            .iter()
            .all(|v| *v == 0.0 || (*v - 1.0 / 0.7).abs() < 1e-6));
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
