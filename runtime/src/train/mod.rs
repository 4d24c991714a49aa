//! Training: losses, optimisers and learning-rate schedules, each matching
//! PyTorch's definition and defaults.
//!
//! - Losses ([`cross_entropy`], [`nll_loss`], [`mse_loss`], [`l1_loss`],
//!   [`bce_with_logits`]) return a scalar tensor (reduction "mean"), built
//!   from differentiable candle ops only, so `loss.backward()` reaches every
//!   input; all are numerically stable (log-sum-exp with the row maximum
//!   subtracted, BCE in its `max(x, 0) - x t + log(1 + e^-|x|)` form).
//! - Optimisers ([`Sgd`], [`Adam`], [`AdamW`]) implement [`Optimizer`] over a
//!   `Vec<Var>`, with PyTorch's update rules (single-tensor, CPU code path),
//!   and expose their state for checkpoints ([`Optimizer::state`],
//!   [`Optimizer::load_state`]).
//! - Schedules ([`StepLr`], [`CosineAnnealingLr`]) give the learning rate of
//!   an epoch in closed form ([`LrSchedule::lr_at`]).
//!
//! ```no_run
//! use netdsl_runtime::candle::{Device, Tensor, Var};
//! use netdsl_runtime::train::{cross_entropy, Optimizer, Sgd, SgdConfig};
//!
//! # fn main() -> netdsl_runtime::Result<()> {
//! let w = Var::zeros((4, 3), netdsl_runtime::candle::DType::F32, &Device::Cpu)?;
//! let mut opt = Sgd::new(vec![w.clone()], SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() })?;
//! let x = Tensor::ones((2, 4), netdsl_runtime::candle::DType::F32, &Device::Cpu)?;
//! let y = Tensor::new(&[0u32, 2], &Device::Cpu)?;
//! let loss = cross_entropy(&x.matmul(w.as_tensor())?, &y, 0.0)?;
//! opt.backward_step(&loss)?;
//! # Ok(())
//! # }
//! ```

mod loss;
mod optim;
mod schedule;

pub use loss::{bce_with_logits, cross_entropy, l1_loss, mse_loss, nll_loss};
pub use optim::{clip_grad_norm, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig};
pub use schedule::{CosineAnnealingLr, LrSchedule, StepLr};

/// A typed error built from a message (candle's `Error::Msg`).
pub(crate) fn error(msg: impl Into<String>) -> crate::Error {
    crate::Error::Candle(candle_core::Error::Msg(msg.into()))
}
