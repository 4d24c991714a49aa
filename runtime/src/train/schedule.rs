//! Learning-rate schedules, as the closed forms of PyTorch's
//! `torch.optim.lr_scheduler` classes: the learning rate of an epoch is a
//! function of the base learning rate and the epoch alone, so a resumed run
//! needs no scheduler state beyond the epoch number.

use super::error;
use crate::Result;

/// A learning rate per epoch.
pub trait LrSchedule {
    /// The learning rate for `epoch` (0 = the first) when the optimiser
    /// started at `base_lr`.
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64;
}

/// `StepLR(step_size, gamma)`: `base_lr * gamma^(epoch / step_size)`
/// (integer division): decays by `gamma` every `step_size` epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLr {
    step_size: usize,
    gamma: f64,
}

impl StepLr {
    /// Errors if `step_size` is 0 or `gamma` is not finite.
    pub fn new(step_size: usize, gamma: f64) -> Result<Self> {
        if step_size == 0 {
            return Err(error("StepLr: step_size must be at least 1"));
        }
        if !gamma.is_finite() {
            return Err(error(format!("StepLr: invalid gamma {gamma}")));
        }
        Ok(Self { step_size, gamma })
    }

    /// Epochs between two decays.
    pub fn step_size(&self) -> usize {
        self.step_size
    }

    /// The decay factor.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }
}

impl LrSchedule for StepLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        let decays = epoch / self.step_size;
        base_lr * self.gamma.powf(decays as f64)
    }
}

/// `CosineAnnealingLR(T_max, eta_min)`:
/// `eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2`,
/// from `base_lr` at epoch 0 down to `eta_min` at `t_max`, and (as PyTorch's
/// scheduler does) back up again after it, with period `2 * t_max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineAnnealingLr {
    t_max: usize,
    eta_min: f64,
}

impl CosineAnnealingLr {
    /// Errors if `t_max` is 0 or `eta_min` is not finite.
    pub fn new(t_max: usize, eta_min: f64) -> Result<Self> {
        if t_max == 0 {
            return Err(error("CosineAnnealingLr: t_max must be at least 1"));
        }
        if !eta_min.is_finite() {
            return Err(error(format!(
                "CosineAnnealingLr: invalid eta_min {eta_min}"
            )));
        }
        Ok(Self { t_max, eta_min })
    }

    /// Epochs from the base learning rate down to `eta_min`.
    pub fn t_max(&self) -> usize {
        self.t_max
    }

    /// The lowest learning rate.
    pub fn eta_min(&self) -> f64 {
        self.eta_min
    }
}

impl LrSchedule for CosineAnnealingLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        let phase = std::f64::consts::PI * epoch as f64 / self.t_max as f64;
        self.eta_min + (base_lr - self.eta_min) * (1.0 + phase.cos()) / 2.0
    }
}
