//! Dropout: a mask drawn from the network's own seeded generator (candle's
//! CPU generator cannot be seeded), so a training run is reproducible; the
//! kept values scaled by `1 / (1 - p)` as PyTorch does.

use std::sync::Mutex;

use candle_core::Tensor;

use crate::{Result, Rng};

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
    let mask = keep_mask(rng.uniform(x.elem_count()), keep);
    let mask = Tensor::from_vec(mask, x.shape(), &candle_core::Device::Cpu)?
        .to_dtype(x.dtype())?
        .to_device(x.device())?;
    Ok(x.mul(&mask)?)
}

/// Inverted-dropout scales from uniform draws: `1/keep` where a draw is
/// below `keep`, else 0 (shared by dropout and drop path).
pub(crate) fn keep_mask(draws: Vec<f32>, keep: f64) -> Vec<f32> {
    draws
        .into_iter()
        .map(|u| {
            if (u as f64) < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect()
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
}
