//! Optimisers with PyTorch's update rules and defaults (`torch.optim.SGD`,
//! `Adam`, `AdamW`; the single-tensor code path PyTorch takes on CPU), over a
//! list of candle [`Var`]s.

use std::collections::{HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use super::error;
use crate::Result;

/// What every optimiser does: update its variables from their gradients, and
/// expose its learning rate and state (for schedules and checkpoints).
pub trait Optimizer {
    /// One update of every variable that has a gradient in `grads`.
    /// Variables without one are skipped, their state untouched (as PyTorch
    /// skips parameters whose `.grad` is `None`); a step in which no variable
    /// has one is [`Error::NoGradient`](crate::Error::NoGradient) (the loss
    /// came from a network in eval mode, or does not depend on the variables).
    fn step(&mut self, grads: &GradStore) -> Result<()>;

    /// The learning rate the next [`step`](Optimizer::step) uses.
    fn lr(&self) -> f64;

    /// Sets the learning rate (a schedule calls this once per epoch).
    fn set_lr(&mut self, lr: f64);

    /// The optimiser's state, for a checkpoint: `step` (I64, number of
    /// [`step`](Optimizer::step) calls), `lr` (F64), and per variable `i` (its
    /// index in the list the optimiser was built with) PyTorch's buffer names:
    /// `i.momentum_buffer` (SGD with momentum), `i.step` (I64), `i.exp_avg`,
    /// `i.exp_avg_sq` (Adam, AdamW). A variable that has not been updated yet
    /// has no entries. The tensors are snapshots: later steps do not change
    /// them.
    fn state(&self) -> Vec<(String, Tensor)>;

    /// Restores a state written by [`state`](Optimizer::state) (of an
    /// optimiser of the same kind over variables of the same shapes), so the
    /// next steps continue bit for bit where that one stopped. Buffers move to
    /// each variable's device and dtype. Unknown keys, missing `step`/`lr`,
    /// wrong shapes or an incomplete set of a variable's buffers are errors,
    /// and on error nothing is changed.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;

    /// The variables the optimiser updates, in order.
    fn vars(&self) -> &[Var];

    /// `loss.backward()`, then [`step`](Optimizer::step).
    fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }
}

// ---------------------------------------------------------------------------
// SGD
// ---------------------------------------------------------------------------

/// `torch.optim.SGD`'s hyper-parameters, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (PyTorch's default: 1e-3).
    pub lr: f64,
    /// Momentum factor (default 0: plain SGD).
    pub momentum: f64,
    /// Dampening of the momentum (default 0).
    pub dampening: f64,
    /// Nesterov momentum (default false; needs `momentum > 0` and
    /// `dampening == 0`).
    pub nesterov: bool,
    /// L2 penalty, added to the gradient (default 0).
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// Stochastic gradient descent, PyTorch's rule: with `g = grad + wd * p`,
/// `buf = g` on a variable's first step and `buf = momentum * buf +
/// (1 - dampening) * g` after, the update is `p -= lr * (g + momentum * buf)`
/// (Nesterov), `p -= lr * buf` (momentum) or `p -= lr * g` (none).
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<Var>,
    cfg: SgdConfig,
    steps: u64,
    momentum_buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    /// SGD over `vars`. Errors on hyper-parameters PyTorch rejects (negative
    /// lr, momentum or weight decay; Nesterov without momentum or with
    /// dampening), on non-float variables and on a variable listed twice.
    pub fn new(vars: Vec<Var>, cfg: SgdConfig) -> Result<Self> {
        check_lr("Sgd", cfg.lr)?;
        check_non_negative("Sgd", "momentum", cfg.momentum)?;
        check_non_negative("Sgd", "weight_decay", cfg.weight_decay)?;
        if !cfg.dampening.is_finite() {
            return Err(error(format!("Sgd: invalid dampening {}", cfg.dampening)));
        }
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(error(
                "Sgd: Nesterov momentum requires a momentum > 0 and zero dampening",
            ));
        }
        check_vars("Sgd", &vars)?;
        let momentum_buffers = vec![None; vars.len()];
        Ok(Self {
            vars,
            cfg,
            steps: 0,
            momentum_buffers,
        })
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }
}

/// One SGD update of `var` by candle's tensor ops (any dtype and device);
/// returns the new momentum buffer (`None` without momentum).
fn sgd_tensor_ops(
    var: &Var,
    grad: &Tensor,
    buf: Option<&Tensor>,
    cfg: &SgdConfig,
) -> Result<Option<Tensor>> {
    let SgdConfig {
        lr,
        momentum,
        dampening,
        nesterov,
        weight_decay,
    } = *cfg;
    let param = var.as_tensor().detach();
    let mut grad = grad.detach();
    if weight_decay != 0.0 {
        grad = (grad + (&param * weight_decay)?)?;
    }
    let mut kept = None;
    if momentum != 0.0 {
        let new_buf = match buf {
            None => grad.clone(),
            Some(b) => ((b * momentum)? + (&grad * (1.0 - dampening))?)?,
        };
        grad = if nesterov {
            (grad + (&new_buf * momentum)?)?
        } else {
            new_buf.clone()
        };
        kept = Some(new_buf);
    }
    var.set(&(param + (grad * -lr)?)?)?;
    Ok(kept)
}

/// One SGD update of an f32 CPU variable with an f32 CPU gradient, as one
/// pass over its elements split between threads, writing the variable in
/// place: the same f32 operations in the same order as [`sgd_tensor_ops`]
/// (`x * c` as candle's affine, `x * c + 0`), so the two agree bit for bit,
/// without its six single-threaded passes and the copy into the
/// variable. Returns the new momentum buffer (`Some(None)` without
/// momentum), or `None` where the tensors are not f32 CPU data.
fn sgd_in_place(
    var: &Var,
    grad: &Tensor,
    buf: Option<&Tensor>,
    cfg: &SgdConfig,
) -> Result<Option<Option<Tensor>>> {
    let param = var.as_tensor();
    // Contiguous f32 CPU data only; anything else takes the tensor ops.
    let f32_cpu = |t: &Tensor| t.dtype() == DType::F32 && t.device().is_cpu() && t.is_contiguous();
    if !f32_cpu(param) || !f32_cpu(grad) || buf.is_some_and(|b| !f32_cpu(b)) {
        return Ok(None);
    }
    let op = SgdUpdate {
        cfg: *cfg,
        has_buf: buf.is_some(),
        new_buf: std::sync::Mutex::new(Vec::new()),
    };
    // Without a buffer yet, the gradient stands in its place (unread).
    param.inplace_op3(grad, buf.unwrap_or(grad), &op)?;
    let new_buf = op
        .new_buf
        .into_inner()
        .map_err(|_| error("Sgd: a thread panicked during the update"))?;
    if cfg.momentum == 0.0 {
        return Ok(Some(None));
    }
    Ok(Some(Some(Tensor::from_vec(
        new_buf,
        param.shape(),
        param.device(),
    )?)))
}

/// [`sgd_in_place`]'s pass, run on the variable's storage with the gradient
/// and the momentum buffer.
struct SgdUpdate {
    cfg: SgdConfig,
    has_buf: bool,
    new_buf: std::sync::Mutex<Vec<f32>>,
}

impl candle_core::InplaceOp3 for SgdUpdate {
    fn name(&self) -> &'static str {
        "netdsl-sgd"
    }

    fn cpu_fwd(
        &self,
        dst: &mut candle_core::CpuStorage,
        dst_l: &candle_core::Layout,
        gs: &candle_core::CpuStorage,
        gl: &candle_core::Layout,
        bs: &candle_core::CpuStorage,
        bl: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use rayon::prelude::*;
        let whole = |l: &candle_core::Layout, len: usize| match l.contiguous_offsets() {
            Some((a, b)) if b <= len => Ok(a..b),
            _ => candle_core::bail!("sgd: expected contiguous tensors"),
        };
        let (
            candle_core::CpuStorage::F32(p),
            candle_core::CpuStorage::F32(g),
            candle_core::CpuStorage::F32(b),
        ) = (dst, gs, bs)
        else {
            candle_core::bail!("sgd: expected f32 tensors");
        };
        let range = whole(dst_l, p.len())?;
        let p = &mut p[range];
        let g = &g[whole(gl, g.len())?];
        let b = &b[whole(bl, b.len())?];
        if g.len() != p.len() || b.len() != p.len() {
            candle_core::bail!("sgd: the gradient's size differs from the variable's");
        }
        let c = &self.cfg;
        // candle's `x * c` is its affine `x * c + 0` in f32.
        let scale = |x: f32, k: f64| x * k as f32 + 0f32;
        let (wd, m, damp, lr) = (c.weight_decay, c.momentum, 1.0 - c.dampening, -c.lr);
        let mut nb = vec![0f32; if m != 0.0 { p.len() } else { 0 }];
        const CHUNK: usize = 1 << 14;
        let update = |k: usize, pc: &mut [f32], nbc: &mut [f32]| {
            let at = k * CHUNK;
            for (i, pv) in pc.iter_mut().enumerate() {
                let mut gv = g[at + i];
                if wd != 0.0 {
                    gv += scale(*pv, wd);
                }
                if m != 0.0 {
                    let new = if self.has_buf {
                        scale(b[at + i], m) + scale(gv, damp)
                    } else {
                        gv
                    };
                    nbc[i] = new;
                    gv = if c.nesterov { gv + scale(new, m) } else { new };
                }
                *pv += scale(gv, lr);
            }
        };
        crate::conv::on_pool(|_| {
            if m != 0.0 {
                p.par_chunks_mut(CHUNK)
                    .zip(nb.par_chunks_mut(CHUNK))
                    .enumerate()
                    .for_each(|(k, (pc, nbc))| update(k, pc, nbc));
            } else {
                p.par_chunks_mut(CHUNK)
                    .enumerate()
                    .for_each(|(k, pc)| update(k, pc, &mut []));
            }
        });
        if let Ok(mut slot) = self.new_buf.lock() {
            *slot = nb;
        }
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        require_some_gradient(&self.vars, grads)?;
        for (var, buf) in self.vars.iter().zip(self.momentum_buffers.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let new_buf = match sgd_in_place(var, grad, buf.as_ref(), &self.cfg)? {
                Some(b) => b,
                None => sgd_tensor_ops(var, grad, buf.as_ref(), &self.cfg)?,
            };
            if self.cfg.momentum != 0.0 {
                *buf = new_buf;
            }
        }
        self.steps += 1;
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = common_state(self.steps, self.cfg.lr);
        for (i, buf) in self.momentum_buffers.iter().enumerate() {
            if let Some(b) = buf {
                out.push((format!("{i}.momentum_buffer"), b.clone()));
            }
        }
        out
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let reader = StateReader::new("Sgd", state, &self.vars, &["momentum_buffer"])?;
        let (steps, lr) = reader.common()?;
        let mut buffers = Vec::with_capacity(self.vars.len());
        for i in 0..self.vars.len() {
            buffers.push(reader.buffer(i, "momentum_buffer")?);
        }
        self.steps = steps;
        self.cfg.lr = lr;
        self.momentum_buffers = buffers;
        Ok(())
    }

    fn vars(&self) -> &[Var] {
        &self.vars
    }
}

// ---------------------------------------------------------------------------
// Adam / AdamW
// ---------------------------------------------------------------------------

/// `torch.optim.Adam`'s hyper-parameters, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moment (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty, added to the gradient (default 0).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// `torch.optim.AdamW`'s hyper-parameters, with its defaults (those of Adam
/// except the weight decay, 1e-2, which here is decoupled).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moment (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay: `p *= 1 - lr * weight_decay` before the
    /// update (default 1e-2).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// Adam (Kingma & Ba), PyTorch's rule: `m = lerp(m, g, 1 - β1)`,
/// `v = β2 v + (1 - β2) g²`, `p -= lr / (1 - β1^t) * m / (sqrt(v) /
/// sqrt(1 - β2^t) + eps)`, with `g = grad + weight_decay * p` (L2) and `t`
/// counted per variable. No AMSGrad.
#[derive(Debug)]
pub struct Adam {
    core: AdamCore,
}

/// AdamW (Loshchilov & Hutter): Adam with the weight decay decoupled,
/// `p *= 1 - lr * weight_decay` before the Adam update. No AMSGrad.
#[derive(Debug)]
pub struct AdamW {
    core: AdamCore,
}

impl Adam {
    /// Adam over `vars`. Errors on hyper-parameters PyTorch rejects (negative
    /// lr, eps or weight decay; a beta outside `[0, 1)`), on non-float
    /// variables and on a variable listed twice.
    pub fn new(vars: Vec<Var>, cfg: AdamConfig) -> Result<Self> {
        let AdamConfig {
            lr,
            betas,
            eps,
            weight_decay,
        } = cfg;
        let core = AdamCore::new("Adam", vars, lr, betas, eps, weight_decay, false)?;
        Ok(Self { core })
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> AdamConfig {
        let c = &self.core;
        AdamConfig {
            lr: c.lr,
            betas: c.betas,
            eps: c.eps,
            weight_decay: c.weight_decay,
        }
    }
}

impl AdamW {
    /// AdamW over `vars`; errors as [`Adam::new`].
    pub fn new(vars: Vec<Var>, cfg: AdamWConfig) -> Result<Self> {
        let AdamWConfig {
            lr,
            betas,
            eps,
            weight_decay,
        } = cfg;
        let core = AdamCore::new("AdamW", vars, lr, betas, eps, weight_decay, true)?;
        Ok(Self { core })
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> AdamWConfig {
        let c = &self.core;
        AdamWConfig {
            lr: c.lr,
            betas: c.betas,
            eps: c.eps,
            weight_decay: c.weight_decay,
        }
    }
}

macro_rules! delegate_optimizer {
    ($ty:ty) => {
        impl Optimizer for $ty {
            fn step(&mut self, grads: &GradStore) -> Result<()> {
                self.core.step(grads)
            }
            fn lr(&self) -> f64 {
                self.core.lr
            }
            fn set_lr(&mut self, lr: f64) {
                self.core.lr = lr;
            }
            fn state(&self) -> Vec<(String, Tensor)> {
                self.core.state()
            }
            fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
                self.core.load_state(state)
            }
            fn vars(&self) -> &[Var] {
                &self.core.vars
            }
        }
    };
}

delegate_optimizer!(Adam);
delegate_optimizer!(AdamW);

/// One variable's Adam state.
#[derive(Debug, Clone)]
struct AdamBuffers {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

#[derive(Debug)]
struct AdamCore {
    name: &'static str,
    vars: Vec<Var>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    steps: u64,
    buffers: Vec<Option<AdamBuffers>>,
}

const ADAM_BUFFERS: [&str; 3] = ["step", "exp_avg", "exp_avg_sq"];

impl AdamCore {
    fn new(
        name: &'static str,
        vars: Vec<Var>,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        decoupled: bool,
    ) -> Result<Self> {
        check_lr(name, lr)?;
        check_non_negative(name, "eps", eps)?;
        check_non_negative(name, "weight_decay", weight_decay)?;
        for (i, beta) in [betas.0, betas.1].into_iter().enumerate() {
            if !(0.0..1.0).contains(&beta) {
                return Err(error(format!(
                    "{name}: beta parameter at index {i} must be in [0, 1), got {beta}"
                )));
            }
        }
        check_vars(name, &vars)?;
        let buffers = vec![None; vars.len()];
        Ok(Self {
            name,
            vars,
            lr,
            betas,
            eps,
            weight_decay,
            decoupled,
            steps: 0,
            buffers,
        })
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let (beta1, beta2) = self.betas;
        let (lr, eps, weight_decay) = (self.lr, self.eps, self.weight_decay);
        require_some_gradient(&self.vars, grads)?;
        for (var, state) in self.vars.iter().zip(self.buffers.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let mut param = var.as_tensor().detach();
            let mut grad = grad.detach();
            let AdamBuffers {
                step,
                exp_avg,
                exp_avg_sq,
            } = match state.take() {
                Some(s) => s,
                None => AdamBuffers {
                    step: 0,
                    exp_avg: param.zeros_like()?,
                    exp_avg_sq: param.zeros_like()?,
                },
            };
            let step = step + 1;
            if weight_decay != 0.0 {
                if self.decoupled {
                    param = (param * (1.0 - lr * weight_decay))?;
                } else {
                    grad = (grad + (&param * weight_decay)?)?;
                }
            }
            // exp_avg.lerp_(grad, 1 - beta1), as ATen's lerp computes it.
            let weight = 1.0 - beta1;
            let exp_avg = if weight < 0.5 {
                (&exp_avg + (grad.sub(&exp_avg)? * weight)?)?
            } else {
                (&grad - (grad.sub(&exp_avg)? * (1.0 - weight))?)?
            };
            // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            let exp_avg_sq = ((exp_avg_sq * beta2)? + (&grad * (1.0 - beta2))?.mul(&grad)?)?;
            let bias_correction1 = 1.0 - beta1.powf(step as f64);
            let bias_correction2 = 1.0 - beta2.powf(step as f64);
            let step_size = lr / bias_correction1;
            let denom = ((exp_avg_sq.sqrt()? / bias_correction2.sqrt())? + eps)?;
            let update = (exp_avg.div(&denom)? * -step_size)?;
            var.set(&(param + update)?)?;
            *state = Some(AdamBuffers {
                step,
                exp_avg,
                exp_avg_sq,
            });
        }
        self.steps += 1;
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = common_state(self.steps, self.lr);
        for (i, buf) in self.buffers.iter().enumerate() {
            if let Some(b) = buf {
                out.push((format!("{i}.step"), step_tensor(b.step)));
                out.push((format!("{i}.exp_avg"), b.exp_avg.clone()));
                out.push((format!("{i}.exp_avg_sq"), b.exp_avg_sq.clone()));
            }
        }
        out
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let reader = StateReader::new(self.name, state, &self.vars, &ADAM_BUFFERS)?;
        let (steps, lr) = reader.common()?;
        let mut buffers = Vec::with_capacity(self.vars.len());
        for i in 0..self.vars.len() {
            let step = reader.scalar_u64(&format!("{i}.step"))?;
            let exp_avg = reader.buffer(i, "exp_avg")?;
            let exp_avg_sq = reader.buffer(i, "exp_avg_sq")?;
            buffers.push(match (step, exp_avg, exp_avg_sq) {
                (Some(step), Some(exp_avg), Some(exp_avg_sq)) => Some(AdamBuffers {
                    step,
                    exp_avg,
                    exp_avg_sq,
                }),
                (None, None, None) => None,
                _ => {
                    return Err(error(format!(
                        "{}: state of variable {i} needs all of `{i}.step`, `{i}.exp_avg`, `{i}.exp_avg_sq` or none",
                        self.name
                    )))
                }
            });
        }
        self.steps = steps;
        self.lr = lr;
        self.buffers = buffers;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

fn check_lr(name: &str, lr: f64) -> Result<()> {
    check_non_negative(name, "learning rate", lr)
}

fn check_non_negative(name: &str, what: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(error(format!(
            "{name}: invalid {what} {v} (must be finite and >= 0)"
        )))
    }
}

fn check_vars(name: &str, vars: &[Var]) -> Result<()> {
    let mut seen = HashSet::new();
    for (i, var) in vars.iter().enumerate() {
        if !var.dtype().is_float() {
            return Err(error(format!(
                "{name}: variable {i} is {:?}; only float variables can be optimised",
                var.dtype()
            )));
        }
        if !seen.insert(var.as_tensor().id()) {
            return Err(error(format!(
                "{name}: variable {i} appears more than once in the list"
            )));
        }
    }
    Ok(())
}

/// A step where no variable has a gradient is a mistake, not a no-op: most
/// often the forward pass ran in eval mode, where parameters are detached.
fn require_some_gradient(vars: &[Var], grads: &GradStore) -> Result<()> {
    if !vars.is_empty() && vars.iter().all(|v| grads.get(v.as_tensor()).is_none()) {
        return Err(crate::Error::NoGradient { vars: vars.len() });
    }
    Ok(())
}

fn step_tensor(step: u64) -> Tensor {
    Tensor::new(step as i64, &Device::Cpu).expect("a scalar on the CPU")
}

fn common_state(steps: u64, lr: f64) -> Vec<(String, Tensor)> {
    vec![
        ("step".to_string(), step_tensor(steps)),
        (
            "lr".to_string(),
            Tensor::new(lr, &Device::Cpu).expect("a scalar on the CPU"),
        ),
    ]
}

/// Validates and reads a state map for `load_state`.
struct StateReader<'a> {
    name: &'static str,
    state: &'a HashMap<String, Tensor>,
    vars: &'a [Var],
}

impl<'a> StateReader<'a> {
    /// Rejects every key that is not `step`, `lr` or `i.<buffer>` with
    /// `i < vars.len()` and `<buffer>` one of `buffers`.
    fn new(
        name: &'static str,
        state: &'a HashMap<String, Tensor>,
        vars: &'a [Var],
        buffers: &[&str],
    ) -> Result<Self> {
        let mut unknown: Vec<&str> = state
            .keys()
            .map(String::as_str)
            .filter(|key| {
                if *key == "step" || *key == "lr" {
                    return false;
                }
                let known = key.split_once('.').is_some_and(|(i, buf)| {
                    i.parse::<usize>().is_ok_and(|i| i < vars.len()) && buffers.contains(&buf)
                });
                !known
            })
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(error(format!(
                "{name}: unknown optimiser state {unknown:?} (is it the state of another optimiser, or of a different list of variables?)"
            )));
        }
        Ok(Self { name, state, vars })
    }

    /// `step` and `lr`, both required.
    fn common(&self) -> Result<(u64, f64)> {
        let steps = self
            .scalar_u64("step")?
            .ok_or_else(|| error(format!("{}: optimiser state has no `step`", self.name)))?;
        let lr = self
            .scalar("lr", DType::F64)?
            .ok_or_else(|| error(format!("{}: optimiser state has no `lr`", self.name)))?
            .to_scalar::<f64>()?;
        Ok((steps, lr))
    }

    fn scalar(&self, key: &str, dtype: DType) -> Result<Option<Tensor>> {
        let Some(t) = self.state.get(key) else {
            return Ok(None);
        };
        if t.elem_count() != 1 {
            return Err(error(format!(
                "{}: optimiser state `{key}` must be a scalar, got shape {:?}",
                self.name,
                t.dims()
            )));
        }
        Ok(Some(t.flatten_all()?.squeeze(0)?.to_dtype(dtype)?))
    }

    fn scalar_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(t) = self.scalar(key, DType::I64)? else {
            return Ok(None);
        };
        let v = t.to_scalar::<i64>()?;
        u64::try_from(v).map(Some).map_err(|_| {
            error(format!(
                "{}: optimiser state `{key}` must be >= 0, got {v}",
                self.name
            ))
        })
    }

    /// `i.<buffer>`, shaped like variable `i`, on its device and in its dtype.
    fn buffer(&self, i: usize, buffer: &str) -> Result<Option<Tensor>> {
        let key = format!("{i}.{buffer}");
        let Some(t) = self.state.get(&key) else {
            return Ok(None);
        };
        let var = &self.vars[i];
        if t.dims() != var.dims() {
            return Err(error(format!(
                "{}: optimiser state `{key}` has shape {:?}, but variable {i} has shape {:?}",
                self.name,
                t.dims(),
                var.dims()
            )));
        }
        Ok(Some(
            t.to_device(var.device())?.to_dtype(var.dtype())?.detach(),
        ))
    }
}

/// `torch.nn.utils.clip_grad_norm_`: when the L2 norm of all of `vars`'
/// gradients together exceeds `max_norm`, scales each by
/// `max_norm / (norm + 1e-6)`. Returns the norm before clipping. Variables
/// without a gradient are skipped.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = g.affine(coef, 0.0)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod clip_tests {
    use super::*;

    #[test]
    fn clips_the_total_norm_and_leaves_small_gradients_alone() {
        let dev = Device::Cpu;
        let a = Var::new(&[3f32, 0.0], &dev).unwrap();
        let b = Var::new(&[4f32], &dev).unwrap();
        // loss = 3·a0 + 0·a1 + 4·b0: gradients (3, 0) and (4), norm 5.
        let w = Tensor::new(&[3f32, 0.0], &dev).unwrap();
        let loss = a
            .as_tensor()
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&b.as_tensor().affine(4.0, 0.0).unwrap().sum_all().unwrap())
            .unwrap();
        let vars = [a.clone(), b.clone()];
        let mut grads = loss.backward().unwrap();
        let norm = clip_grad_norm(&mut grads, &vars, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-5);
        let ga: Vec<f32> = grads.get(a.as_tensor()).unwrap().to_vec1().unwrap();
        let gb: Vec<f32> = grads.get(b.as_tensor()).unwrap().to_vec1().unwrap();
        assert!((ga[0] - 0.6).abs() < 1e-5 && ga[1] == 0.0 && (gb[0] - 0.8).abs() < 1e-5);
        // Below the limit: unchanged.
        let mut grads = loss.backward().unwrap();
        clip_grad_norm(&mut grads, &vars, 10.0).unwrap();
        let gb: Vec<f32> = grads.get(b.as_tensor()).unwrap().to_vec1().unwrap();
        assert!((gb[0] - 4.0).abs() < 1e-5);
    }
}

#[cfg(test)]
mod sgd_tests {
    use super::*;

    /// The in-place pass equals the tensor-op path bit for bit for every
    /// kind of update (plain, momentum, dampening, Nesterov, weight
    /// decay), over three steps (the first builds the buffer), on a
    /// variable of more than one chunk.
    #[test]
    fn in_place_update_equals_the_tensor_ops() {
        let dev = Device::Cpu;
        let n = 40_000;
        let base = Tensor::rand(-1f32, 1.0, n, &dev).unwrap();
        let grads: Vec<Tensor> = (0..3)
            .map(|_| Tensor::rand(-1f32, 1.0, n, &dev).unwrap())
            .collect();
        let plain = SgdConfig {
            lr: 0.1,
            ..Default::default()
        };
        let configs = [
            plain,
            SgdConfig {
                momentum: 0.9,
                ..plain
            },
            SgdConfig {
                momentum: 0.9,
                dampening: 0.3,
                weight_decay: 1e-2,
                ..plain
            },
            SgdConfig {
                momentum: 0.8,
                nesterov: true,
                weight_decay: 5e-4,
                ..plain
            },
        ];
        for cfg in configs {
            let (a, b) = (
                Var::from_tensor(&base.copy().unwrap()).unwrap(),
                Var::from_tensor(&base.copy().unwrap()).unwrap(),
            );
            let (mut ba, mut bb) = (None, None);
            for g in &grads {
                ba = sgd_in_place(&a, g, ba.as_ref(), &cfg)
                    .unwrap()
                    .expect("f32 CPU");
                bb = sgd_tensor_ops(&b, g, bb.as_ref(), &cfg).unwrap();
                let bits = |t: &Tensor| -> Vec<u32> {
                    t.to_vec1::<f32>()
                        .unwrap()
                        .iter()
                        .map(|v| v.to_bits())
                        .collect()
                };
                assert_eq!(bits(a.as_tensor()), bits(b.as_tensor()), "{cfg:?}");
                assert_eq!(ba.as_ref().map(bits), bb.as_ref().map(bits), "{cfg:?}");
            }
        }
    }
}
