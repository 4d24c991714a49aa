//! Losses, as PyTorch's `torch.nn.functional` defines them with its default
//! reduction (`"mean"`). Every loss returns a 0-d tensor built from
//! differentiable candle ops only.

use candle_core::{DType, Tensor, D};

use super::error;
use crate::Result;

/// `F.cross_entropy(logits, targets, label_smoothing=..)`: the mean over the
/// batch of `-log softmax(logits)[target]`, mixed with the uniform
/// distribution when `label_smoothing > 0`:
/// `(1 - ε) * nll + ε / C * mean_n(-Σ_c log p_nc)`.
///
/// `logits` is `[N, C]` (float), `targets` `[N]` class indices (any integer
/// dtype: U8, U32, I16, I32, I64). A target outside `[0, C)` is an error
/// (PyTorch's `ignore_index` is not supported). `label_smoothing` must lie in
/// `[0, 1]`. The log-softmax subtracts each row's maximum, so logits of any
/// magnitude give finite values and gradients.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, label_smoothing: f64) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(error(format!(
            "cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}"
        )));
    }
    let (n, c) = check_scores("cross_entropy", "logits", logits)?;
    let index = class_index("cross_entropy", targets, n, c, logits)?;
    let log_probs = log_softmax_rows(logits)?;
    let nll = log_probs.gather(&index, 1)?.neg()?.mean_all()?;
    if label_smoothing == 0.0 {
        return Ok(nll);
    }
    let smooth = log_probs.sum(1)?.neg()?.mean_all()?;
    Ok(((nll * (1.0 - label_smoothing))? + (smooth * (label_smoothing / c as f64))?)?)
}

/// `F.nll_loss(log_probs, targets)`: the mean over the batch of
/// `-log_probs[n, targets[n]]`. `log_probs` is `[N, C]`, `targets` `[N]`
/// class indices in `[0, C)` (any integer dtype).
pub fn nll_loss(log_probs: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, c) = check_scores("nll_loss", "log_probs", log_probs)?;
    let index = class_index("nll_loss", targets, n, c, log_probs)?;
    Ok(log_probs.gather(&index, 1)?.neg()?.mean_all()?)
}

/// `F.mse_loss(a, b)`: `mean((a - b)^2)`. `a` and `b` must have the same
/// shape (PyTorch would broadcast, with a warning; here it is an error).
pub fn mse_loss(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_pair("mse_loss", a, b)?;
    Ok(a.sub(b)?.sqr()?.mean_all()?)
}

/// `F.l1_loss(a, b)`: `mean(|a - b|)`, with PyTorch's gradient
/// `sign(a - b) / n` (0 where `a == b`; candle's own `abs` would give 1).
pub fn l1_loss(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_pair("l1_loss", a, b)?;
    let diff = a.sub(b)?;
    let sign = diff.sign()?.detach();
    Ok(diff.mul(&sign)?.mean_all()?)
}

/// `F.binary_cross_entropy_with_logits(logits, targets)`: the mean of
/// `max(x, 0) - x t + log(1 + exp(-|x|))`, the stable form of
/// `-(t log σ(x) + (1 - t) log(1 - σ(x)))`: finite (value and gradient
/// `(σ(x) - t) / n`) for saturated logits such as ±100. `targets` are
/// probabilities of the same shape and dtype; gradients reach both inputs.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_pair("bce_with_logits", logits, targets)?;
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let loss = ((logits.relu()? - logits.mul(targets)?)? + softplus_neg_abs)?;
    Ok(loss.mean_all()?)
}

/// Row-wise log-softmax of `[N, C]` scores, the row maximum subtracted first
/// (and detached: the result does not depend on it).
fn log_softmax_rows(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let log_sum_exp = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum_exp)?)
}

/// Checks `[N, C]` float scores; returns `(N, C)`.
fn check_scores(loss: &str, what: &str, x: &Tensor) -> Result<(usize, usize)> {
    if !x.dtype().is_float() {
        return Err(error(format!(
            "{loss}: {what} must be a float tensor, got {:?}",
            x.dtype()
        )));
    }
    match *x.dims() {
        [n, c] if c > 0 => Ok((n, c)),
        _ => Err(error(format!(
            "{loss}: {what} must have shape [N, C] with C > 0, got {:?}",
            x.dims()
        ))),
    }
}

/// Checks `targets` (`[N]` integer class indices in `[0, C)`) and returns
/// them as a `[N, 1]` U32 tensor on `scores`' device, for `gather`.
fn class_index(
    loss: &str,
    targets: &Tensor,
    n: usize,
    c: usize,
    scores: &Tensor,
) -> Result<Tensor> {
    if targets.dtype().is_float() {
        return Err(error(format!(
            "{loss}: targets must be integer class indices, got a {:?} tensor",
            targets.dtype()
        )));
    }
    if targets.dims() != [n] {
        return Err(error(format!(
            "{loss}: targets must have shape [{n}] (one class index per row of the [{n}, {c}] input), got {:?}",
            targets.dims()
        )));
    }
    let values = targets.to_dtype(DType::I64)?.to_vec1::<i64>()?;
    if let Some((i, &t)) = values
        .iter()
        .enumerate()
        .find(|(_, &t)| t < 0 || t >= c as i64)
    {
        return Err(error(format!(
            "{loss}: target {t} at index {i} is out of range for {c} classes (valid: 0..{c})"
        )));
    }
    let index: Vec<u32> = values.iter().map(|&t| t as u32).collect();
    Ok(Tensor::from_vec(index, (n, 1), scores.device())?)
}

/// Checks that a pair of loss inputs are float tensors of one shape and dtype.
fn check_pair(loss: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if !a.dtype().is_float() || a.dtype() != b.dtype() {
        return Err(error(format!(
            "{loss}: both inputs must be float tensors of the same dtype, got {:?} and {:?}",
            a.dtype(),
            b.dtype()
        )));
    }
    if a.dims() != b.dims() {
        return Err(error(format!(
            "{loss}: both inputs must have the same shape, got {:?} and {:?}",
            a.dims(),
            b.dims()
        )));
    }
    Ok(())
}
