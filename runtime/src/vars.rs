//! Parameters in training and inference: what a generated `forward` calls so that
//! the same code trains (gradients flow into the parameters) and infers
//! (parameters detached, no graph kept). The ops that behave differently
//! in the two modes live with their families: batch norm in `norm`,
//! dropout in `dropout`.

use candle_core::{Tensor, Var};

use crate::Result;

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
