//! Recurrent layers, PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU`: stacked,
//! bidirectional, batch-first or time-major, with optional initial states
//! and packed-sequence lengths.
//!
//! Each layer and direction projects its whole input sequence with one
//! matrix multiply (both biases folded in where the cell allows), then runs
//! the steps: one `[B, H] x [H, G·H]` multiply and the gate arithmetic per
//! step. Three paths run it: in f32 on the CPU, a fused loop on plain
//! buffers when nothing tracks a gradient (`fast`; for an LSTM with
//! AVX-512, one kernel per step with no projection pass,
//! `crate::lstm_step`), and one custom op per
//! layer and direction with its own backward through time when something
//! does (`crate::rnn_train`, not for LSTM's `proj_size`); elsewhere candle
//! ops step by step. Gradients flow to the parameters, the input and the
//! initial states.
//!
//! candle-nn's own recurrent layers are not used: their backward direction
//! does not reverse time and their GRU sequence output is misshaped
//! (`../shared/candle-notes.md`).

use candle_core::{DType, Tensor};

use crate::dropout::{dropout, Generator};
use crate::{Error, Result};

/// The parameters of a recurrent layer in PyTorch's layout, one entry per
/// layer and direction at index `layer * directions + direction`
/// (`weight_ih_l0`, `weight_ih_l0_reverse`, `weight_ih_l1`, ..):
/// `weight_ih` `[G·H, in]`, `weight_hh` `[G·H, H_out]`, `bias_ih` and
/// `bias_hh` `[G·H]` (empty without bias), `weight_hr` `[H_out, H]` (LSTM
/// with `proj_size` only; empty otherwise). `G` is 1 (RNN), 4 (LSTM,
/// gates i, f, g, o) or 3 (GRU, gates r, z, n).
#[derive(Debug, Clone, Default)]
pub struct RnnParams {
    pub weight_ih: Vec<Tensor>,
    pub weight_hh: Vec<Tensor>,
    pub bias_ih: Vec<Tensor>,
    pub bias_hh: Vec<Tensor>,
    pub weight_hr: Vec<Tensor>,
}

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.
    RnnTanh,
    /// The same with ReLU.
    RnnRelu,
    Lstm,
    Gru,
}

impl Cell {
    /// Gates stacked in the weights.
    pub fn gates(self) -> usize {
        match self {
            Cell::RnnTanh | Cell::RnnRelu => 1,
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Cell::RnnTanh | Cell::RnnRelu => "RNN",
            Cell::Lstm => "LSTM",
            Cell::Gru => "GRU",
        }
    }
}

/// A recurrent layer's configuration, as PyTorch's constructor takes it.
#[derive(Clone, Copy, Debug)]
pub struct RnnSpec {
    pub cell: Cell,
    pub hidden: usize,
    /// LSTM's `proj_size` (0: none): the hidden state is projected to it.
    pub proj: usize,
    pub layers: usize,
    pub bidirectional: bool,
    /// `[B, T, F]` when true, `[T, B, F]` otherwise.
    pub batch_first: bool,
    /// Dropout on each layer's output but the last, while training.
    pub dropout: f64,
}

impl RnnSpec {
    fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// The size of `h`: `proj_size` when given, else `hidden`.
    pub fn out_size(&self) -> usize {
        if self.proj > 0 {
            self.proj
        } else {
            self.hidden
        }
    }
}

/// What a recurrent layer gives: the output sequence (`[B, T, D·H_out]`
/// batch-first, `[T, B, D·H_out]` otherwise), the final hidden state
/// `h_n` `[L·D, B, H_out]` and, for an LSTM, the final cell state `c_n`
/// `[L·D, B, H]`.
#[derive(Debug, Clone)]
pub struct RnnOutput {
    pub output: Tensor,
    pub h: Tensor,
    pub c: Option<Tensor>,
}

impl RnnOutput {
    /// The final cell state `c_n`; an error for an RNN or a GRU, which have
    /// none.
    pub fn cell(&self) -> Result<Tensor> {
        self.c.clone().ok_or_else(|| Error::Layer {
            layer: "recurrent layer",
            message: "has no cell state (only an LSTM has one)".to_string(),
        })
    }
}

/// The initial states and sequence lengths of one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct RnnInputs<'a> {
    /// `h_0` `[L·D, B, H_out]`; zeros when absent.
    pub h0: Option<&'a Tensor>,
    /// `c_0` `[L·D, B, H]` (LSTM); zeros when absent.
    pub c0: Option<&'a Tensor>,
    /// Each sequence's length (`[B]`, an integer or float dtype, each in
    /// `1..=T`): packed-sequence semantics. A step past a sequence's end
    /// leaves its states unchanged and outputs zeros; the reverse direction
    /// starts at each sequence's own last step.
    pub lengths: Option<&'a Tensor>,
}

fn bad(layer: &'static str, message: String) -> Error {
    Error::Layer { layer, message }
}

/// Where a generated network keeps a recurrent layer's weights packed for
/// inference's fused LSTM step: its fusion cache and the layer's slot
/// there. Packed on the first call (for each thread count it runs with),
/// packed again when a weight tensor is replaced or the cache is cleared
/// (`train()`, `eval()`).
#[derive(Clone, Copy)]
pub struct RnnCache<'a> {
    pub fusion: &'a crate::Fusion,
    pub slot: usize,
}

/// Runs a recurrent layer on `x`. `layer` names it in errors.
pub fn rnn(
    layer: &'static str,
    x: &Tensor,
    p: &RnnParams,
    spec: RnnSpec,
    inputs: RnnInputs,
    training: bool,
    rng: &Generator,
) -> Result<RnnOutput> {
    rnn_cached(layer, x, p, spec, inputs, training, rng, None)
}

/// [`rnn`], an LSTM's weights packed once for inference and kept in
/// `cache` instead of packed on every call.
#[allow(clippy::too_many_arguments)]
pub fn rnn_cached(
    layer: &'static str,
    x: &Tensor,
    p: &RnnParams,
    spec: RnnSpec,
    inputs: RnnInputs,
    training: bool,
    rng: &Generator,
    cache: Option<RnnCache>,
) -> Result<RnnOutput> {
    let dirs = spec.directions();
    let n = spec.layers * dirs;
    let (h, hout, g) = (spec.hidden, spec.out_size(), spec.cell.gates());
    if p.weight_ih.len() != n || p.weight_hh.len() != n {
        return Err(bad(
            layer,
            format!(
                "has weights for {} layer-directions, but its configuration needs {n}",
                p.weight_ih.len()
            ),
        ));
    }
    if x.rank() != 3 {
        return Err(bad(
            layer,
            format!(
                "takes a 3-d sequence ({}), but was given shape {:?}",
                if spec.batch_first {
                    "[B, T, F]"
                } else {
                    "[T, B, F]"
                },
                x.dims()
            ),
        ));
    }
    // Time-major inside: one step is a contiguous `[B, F]` slice.
    let xt = if spec.batch_first {
        x.transpose(0, 1)?.contiguous()?
    } else {
        x.contiguous()?
    };
    let (t_len, batch, feat) = xt.dims3()?;
    if t_len == 0 {
        return Err(bad(layer, "was given a sequence of length 0".to_string()));
    }
    let want_in = p.weight_ih[0].dim(1)?;
    if feat != want_in {
        return Err(bad(
            layer,
            format!("expects {want_in} input features, but the input has {feat}"),
        ));
    }
    let check_state = |s: Option<&Tensor>, size: usize, what: &str| -> Result<()> {
        if let Some(s) = s {
            if s.dims() != [n, batch, size] {
                return Err(bad(
                    layer,
                    format!(
                        "{what} must be [{n}, {batch}, {size}] (layers x directions, batch, size), but is {:?}",
                        s.dims()
                    ),
                ));
            }
        }
        Ok(())
    };
    check_state(inputs.h0, hout, "h_0")?;
    check_state(inputs.c0, h, "c_0")?;
    if inputs.c0.is_some() && spec.cell != Cell::Lstm {
        return Err(bad(
            layer,
            format!(
                "a {} has no cell state, but c_0 was given",
                spec.cell.name()
            ),
        ));
    }
    let lens = match inputs.lengths {
        None => None,
        Some(l) => Some(lengths_of(layer, l, t_len, batch)?),
    };
    // Inference on the CPU, with nothing to differentiate: the fused loop.
    let tracked = |t: Option<&Tensor>| t.is_some_and(Tensor::track_op);
    // In inference the parameters are read detached, as every layer's are
    // (`param`): no gradient flows to them.
    // The packed weights' store, keyed by the layer's own tensors (the
    // detached copies below are new tensors on every call).
    let packs = match cache {
        Some(c) if !training && spec.cell == Cell::Lstm && spec.proj == 0 => {
            let sources: Vec<&Tensor> = p.weight_ih.iter().chain(&p.weight_hh).collect();
            Some(c.fusion.get_lstm(c.slot, &sources)?)
        }
        _ => None,
    };
    let detached;
    let p = if training {
        p
    } else {
        let d = |v: &Vec<Tensor>| v.iter().map(Tensor::detach).collect();
        detached = RnnParams {
            weight_ih: d(&p.weight_ih),
            weight_hh: d(&p.weight_hh),
            bias_ih: d(&p.bias_ih),
            bias_hh: d(&p.bias_hh),
            weight_hr: d(&p.weight_hr),
        };
        &detached
    };
    let fast = !training
        && x.dtype() == DType::F32
        && x.device().is_cpu()
        && !tracked(Some(x))
        && !tracked(inputs.h0)
        && !tracked(inputs.c0);
    // Differentiable on the CPU in f32 without a projection: one op per
    // layer-direction with its own backward (`rnn_train`).
    let whole = !fast && x.dtype() == DType::F32 && x.device().is_cpu() && spec.proj == 0;
    let masks = match (&lens, fast || whole) {
        (Some(l), false) => Some(step_masks(l, t_len, x.dtype(), x)?),
        _ => None,
    };
    let mut seq = xt;
    let mut hs = Vec::with_capacity(n);
    let mut cs = Vec::with_capacity(n);
    for l in 0..spec.layers {
        let mut outs = Vec::with_capacity(dirs);
        for d in 0..dirs {
            let k = l * dirs + d;
            let h_init = match inputs.h0 {
                Some(s) => s.get(k)?,
                None => Tensor::zeros((batch, hout), x.dtype(), x.device())?,
            };
            let c_init = match (spec.cell, inputs.c0) {
                (Cell::Lstm, Some(s)) => Some(s.get(k)?),
                (Cell::Lstm, None) => Some(Tensor::zeros((batch, h), x.dtype(), x.device())?),
                _ => None,
            };
            let (out, hn, cn) = if whole {
                whole_direction(
                    &seq,
                    p,
                    k,
                    spec,
                    d == 1,
                    &h_init,
                    c_init.as_ref(),
                    lens.as_deref(),
                )?
            } else if fast {
                fast::direction(
                    &seq,
                    p,
                    k,
                    spec,
                    d == 1,
                    &h_init,
                    c_init.as_ref(),
                    lens.as_deref(),
                    packs.as_ref(),
                )?
            } else {
                direction(
                    &seq,
                    p,
                    k,
                    spec,
                    d == 1,
                    h_init,
                    c_init,
                    masks.as_deref(),
                    g,
                )?
            };
            outs.push(out);
            hs.push(hn);
            if let Some(c) = cn {
                cs.push(c);
            }
        }
        seq = if dirs == 1 {
            outs.pop().unwrap_or(seq)
        } else {
            Tensor::cat(&outs, 2)?
        };
        if training && spec.dropout > 0.0 && l + 1 < spec.layers {
            seq = dropout(&seq, spec.dropout, rng)?;
        }
    }
    let output = if spec.batch_first {
        seq.transpose(0, 1)?.contiguous()?
    } else {
        seq
    };
    let h_n = Tensor::stack(&hs, 0)?;
    let c_n = if cs.is_empty() {
        None
    } else {
        Some(Tensor::stack(&cs, 0)?)
    };
    Ok(RnnOutput {
        output,
        h: h_n,
        c: c_n,
    })
}

/// Each sequence's length, checked: `batch` whole numbers in `1..=t_len`.
fn lengths_of(
    layer: &'static str,
    lengths: &Tensor,
    t_len: usize,
    batch: usize,
) -> Result<Vec<usize>> {
    let lens = crate::seq::read_lengths(lengths, 1, t_len)?
        .map_err(|m| bad(layer, format!("{m} (the padded length)")))?;
    if lens.len() != batch {
        return Err(bad(
            layer,
            format!("was given {} lengths for a batch of {batch}", lens.len()),
        ));
    }
    Ok(lens)
}

/// Per step `t`, a `[B, 1]` mask: 1 where `t < length`, 0 past the end.
fn step_masks(lens: &[usize], t_len: usize, dtype: DType, like: &Tensor) -> Result<Vec<Tensor>> {
    (0..t_len)
        .map(|t| {
            let m: Vec<f32> = lens
                .iter()
                .map(|&l| if t < l { 1.0 } else { 0.0 })
                .collect();
            Ok(Tensor::from_vec(m, (lens.len(), 1), like.device())?.to_dtype(dtype)?)
        })
        .collect()
}

/// `a * m + b * (1 - m)` with a `[B, 1]` mask.
fn blend(a: &Tensor, b: &Tensor, m: &Tensor) -> Result<Tensor> {
    // b + m * (a - b): two ops, exact where m is 0 or 1.
    Ok(b.broadcast_add(&a.sub(b)?.broadcast_mul(m)?)?)
}

type DirOut = (Tensor, Tensor, Option<Tensor>);

/// The input projection of layer-direction `k` for every step at once,
/// `[T·B, G·H]`, with `b_ih` and `b_hh` added, except GRU's candidate-gate
/// part of `b_hh`, which sits inside `r * (W_hn h + b_hn)` and is returned.
fn input_projection(
    xs: &Tensor,
    p: &RnnParams,
    k: usize,
    spec: RnnSpec,
) -> Result<(Tensor, Option<Tensor>)> {
    let (t_len, batch, feat) = xs.dims3()?;
    let mut xp = xs
        .reshape((t_len * batch, feat))?
        .matmul(&p.weight_ih[k].t()?)?;
    // Both biases summed first (a `[G·H]` vector): one pass over `xp`.
    let (bias, b_hn) = folded_bias(p, k, spec)?;
    if let Some(b) = bias {
        xp = xp.broadcast_add(&b)?;
    }
    Ok((xp, b_hn))
}

/// Layer-direction `k`'s biases as the input projection takes them:
/// `b_ih + b_hh` `[G·H]` (`None` without biases), except GRU's
/// candidate-gate part of `b_hh`, which sits inside `r * (W_hn h + b_hn)`
/// and is returned apart.
fn folded_bias(p: &RnnParams, k: usize, spec: RnnSpec) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let hid = spec.hidden;
    let mut bias = p.bias_ih.get(k).cloned();
    let mut b_hn = None;
    if let Some(b) = p.bias_hh.get(k) {
        let folded = if spec.cell == Cell::Gru {
            let rz = b.narrow(0, 0, 2 * hid)?;
            let zeros = Tensor::zeros(hid, b.dtype(), b.device())?;
            b_hn = Some(b.narrow(0, 2 * hid, hid)?);
            Tensor::cat(&[&rz, &zeros], 0)?
        } else {
            b.clone()
        };
        bias = Some(match bias {
            Some(a) => a.add(&folded)?,
            None => folded,
        });
    }
    Ok((bias, b_hn))
}

/// One layer in one direction over the time-major sequence `xs` `[T, B, F]`:
/// its outputs `[T, B, H_out]` and final states.
#[allow(clippy::too_many_arguments)]
fn direction(
    xs: &Tensor,
    p: &RnnParams,
    k: usize,
    spec: RnnSpec,
    reverse: bool,
    h_init: Tensor,
    c_init: Option<Tensor>,
    masks: Option<&[Tensor]>,
    g: usize,
) -> Result<DirOut> {
    let (t_len, batch, _) = xs.dims3()?;
    let hid = spec.hidden;
    let w_hh_t = p.weight_hh[k].t()?;
    let (xp, b_hn) = input_projection(xs, p, k, spec)?;
    let xp = xp.reshape((t_len, batch, g * hid))?;
    let w_hr_t = match p.weight_hr.get(k) {
        Some(w) => Some(w.t()?),
        None => None,
    };
    let mut h = h_init;
    let mut c = c_init;
    let mut outs: Vec<Option<Tensor>> = vec![None; t_len];
    for step in 0..t_len {
        let t = if reverse { t_len - 1 - step } else { step };
        let xg = xp.get(t)?;
        let hh = h.matmul(&w_hh_t)?;
        let (h_new, c_new) = match spec.cell {
            Cell::RnnTanh => (xg.add(&hh)?.tanh()?, None),
            Cell::RnnRelu => (xg.add(&hh)?.relu()?, None),
            Cell::Lstm => {
                let gates = xg.add(&hh)?;
                let c_prev = c
                    .as_ref()
                    .ok_or_else(|| candle_core::Error::Msg("LSTM without a cell state".into()))?;
                let (mut h_next, c_next) = lstm_cell(&gates, c_prev, hid)?;
                if let Some(w) = &w_hr_t {
                    h_next = h_next.matmul(w)?;
                }
                (h_next, Some(c_next))
            }
            Cell::Gru => {
                let rz = sigmoid(&xg.narrow(1, 0, 2 * hid)?.add(&hh.narrow(1, 0, 2 * hid)?)?)?;
                let r = rz.narrow(1, 0, hid)?;
                let z = rz.narrow(1, hid, hid)?;
                let mut hn = hh.narrow(1, 2 * hid, hid)?;
                if let Some(b) = &b_hn {
                    hn = hn.broadcast_add(b)?;
                }
                let n = xg.narrow(1, 2 * hid, hid)?.add(&r.mul(&hn)?)?.tanh()?;
                // h' = n + z * (h - n)
                (n.add(&z.mul(&h.sub(&n)?)?)?, None)
            }
        };
        match masks {
            Some(m) => {
                let m = &m[t];
                outs[t] = Some(h_new.broadcast_mul(m)?);
                h = blend(&h_new, &h, m)?;
                if let (Some(cn), Some(cp)) = (c_new, c.as_ref()) {
                    c = Some(blend(&cn, cp, m)?);
                }
            }
            None => {
                outs[t] = Some(h_new.clone());
                h = h_new;
                if c_new.is_some() {
                    c = c_new;
                }
            }
        }
    }
    let outs: Vec<Tensor> = outs.into_iter().flatten().collect();
    let out = Tensor::stack(&outs, 0)?;
    Ok((out, h, c))
}

/// One layer in one direction as one differentiable op over the whole
/// sequence (`rnn_train::SeqOp`): the input projection, the steps and
/// their backward in the op; only the weights' concatenation and the
/// biases' sum are candle ops.
#[allow(clippy::too_many_arguments)]
fn whole_direction(
    xs: &Tensor,
    p: &RnnParams,
    k: usize,
    spec: RnnSpec,
    reverse: bool,
    h_init: &Tensor,
    c_init: Option<&Tensor>,
    lens: Option<&[usize]>,
) -> Result<DirOut> {
    let t_len = xs.dim(0)?;
    let (hid, gh) = (spec.hidden, spec.cell.gates() * spec.hidden);
    let w = Tensor::cat(&[&p.weight_ih[k], &p.weight_hh[k]], 1)?;
    let zeros = |n: usize| Tensor::zeros(n, xs.dtype(), xs.device());
    let (bias, b_hn) = folded_bias(p, k, spec)?;
    let mut extra = vec![h_init.flatten_all()?];
    if spec.cell == Cell::Lstm {
        let c =
            c_init.ok_or_else(|| candle_core::Error::Msg("LSTM without a cell state".into()))?;
        extra.push(c.flatten_all()?);
    }
    extra.push(match bias {
        Some(b) => b,
        None => zeros(gh)?,
    });
    if spec.cell == Cell::Gru {
        extra.push(match b_hn {
            Some(b) => b,
            None => zeros(hid)?,
        });
    }
    let extra = Tensor::cat(&extra, 0)?.contiguous()?;
    let op = crate::rnn_train::SeqOp {
        cell: spec.cell,
        hid,
        reverse,
        lens: lens.map(<[usize]>::to_vec),
        saved: Default::default(),
    };
    // The state after each step, then (LSTM) the final cell state.
    let all = xs.contiguous()?.apply_op3(&w.contiguous()?, &extra, op)?;
    let states = all.narrow(0, 0, t_len)?;
    let h = states.get(if reverse { 0 } else { t_len - 1 })?;
    let c = match spec.cell {
        Cell::Lstm => Some(all.get(t_len)?),
        _ => None,
    };
    // Past a sequence's end the op carries the state; the output is zero.
    let out = match lens {
        Some(l) => {
            states.broadcast_mul(&Tensor::stack(&step_masks(l, t_len, xs.dtype(), xs)?, 0)?)?
        }
        None => states,
    };
    Ok((out, h, c))
}

/// The LSTM cell after the gate pre-activations `[B, 4H]`: `(h, c')`. On
/// the CPU in `f32`, one fused op with its own backward (the gates
/// recomputed from the pre-activations, so nothing else is kept); elsewhere
/// candle's ops.
fn lstm_cell(gates: &Tensor, c_prev: &Tensor, hid: usize) -> Result<(Tensor, Tensor)> {
    if gates.device().is_cpu() && gates.dtype() == DType::F32 && c_prev.dtype() == DType::F32 {
        let hc = gates
            .contiguous()?
            .apply_op2(&c_prev.contiguous()?, cell_op::LstmCell { hid })?;
        return Ok((hc.narrow(1, 0, hid)?, hc.narrow(1, hid, hid)?));
    }
    let i = sigmoid(&gates.narrow(1, 0, hid)?)?;
    let f = sigmoid(&gates.narrow(1, hid, hid)?)?;
    let gg = gates.narrow(1, 2 * hid, hid)?.tanh()?;
    let o = sigmoid(&gates.narrow(1, 3 * hid, hid)?)?;
    let c_next = f.mul(c_prev)?.add(&i.mul(&gg)?)?;
    let h_next = o.mul(&c_next.tanh()?)?;
    Ok((h_next, c_next))
}

/// The fused LSTM cell as a candle op: `[B, 4H]` pre-activations and
/// `c` `[B, H]` in, `[h | c']` `[B, 2H]` out, with its backward.
mod cell_op {
    use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

    pub(super) struct LstmCell {
        pub hid: usize,
    }

    fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
        crate::host::f32_slice("lstm cell", s, l)
    }

    fn sig(x: f32) -> f32 {
        1.0 / (1.0 + (-x).exp())
    }

    impl CustomOp2 for LstmCell {
        fn name(&self) -> &'static str {
            "netdsl-lstm-cell"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let h = self.hid;
            let (gates, c) = (slice(s1, l1)?, slice(s2, l2)?);
            let b = c.len() / h.max(1);
            if h == 0 || gates.len() != 4 * h * b || c.len() != h * b {
                return Err(candle_core::Error::Msg(
                    "lstm cell: gates must be [B, 4H] and c [B, H]".into(),
                ));
            }
            let mut out = vec![0f32; 2 * h * b];
            for (r, (g, o)) in gates
                .chunks_exact(4 * h)
                .zip(out.chunks_exact_mut(2 * h))
                .enumerate()
            {
                let (hs, cs) = o.split_at_mut(h);
                let cr = &c[r * h..(r + 1) * h];
                for j in 0..h {
                    let cn = sig(g[h + j]) * cr[j] + sig(g[j]) * g[2 * h + j].tanh();
                    cs[j] = cn;
                    hs[j] = sig(g[3 * h + j]) * cn.tanh();
                }
            }
            Ok((CpuStorage::F32(out), Shape::from((b, 2 * h))))
        }

        fn bwd(
            &self,
            gates: &Tensor,
            c: &Tensor,
            _res: &Tensor,
            grad: &Tensor,
        ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
            let h = self.hid;
            let g: Vec<f32> = gates.flatten_all()?.to_vec1()?;
            let cv: Vec<f32> = c.flatten_all()?.to_vec1()?;
            let dy: Vec<f32> = grad.flatten_all()?.to_vec1()?;
            let b = cv.len() / h.max(1);
            if h == 0 || g.len() != 4 * h * b || dy.len() != 2 * h * b {
                return Err(candle_core::Error::Msg("lstm cell: backward shapes".into()));
            }
            let mut dg = vec![0f32; 4 * h * b];
            let mut dc = vec![0f32; h * b];
            for r in 0..b {
                let gr = &g[r * 4 * h..(r + 1) * 4 * h];
                let d = &mut dg[r * 4 * h..(r + 1) * 4 * h];
                for j in 0..h {
                    let (i, f) = (sig(gr[j]), sig(gr[h + j]));
                    let (gg, o) = (gr[2 * h + j].tanh(), sig(gr[3 * h + j]));
                    let cp = cv[r * h + j];
                    let tc = (f * cp + i * gg).tanh();
                    let (dh, dcn) = (dy[r * 2 * h + j], dy[r * 2 * h + h + j]);
                    let dct = dcn + dh * o * (1.0 - tc * tc);
                    d[j] = dct * gg * i * (1.0 - i);
                    d[h + j] = dct * cp * f * (1.0 - f);
                    d[2 * h + j] = dct * i * (1.0 - gg * gg);
                    d[3 * h + j] = dh * tc * o * (1.0 - o);
                    dc[r * h + j] = dct * f;
                }
            }
            let dev = gates.device();
            Ok((
                Some(Tensor::from_vec(dg, gates.shape(), dev)?),
                Some(Tensor::from_vec(dc, c.shape(), dev)?),
            ))
        }
    }
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::sigmoid(x)?)
}

/// The inference loop of one layer-direction on plain `f32` buffers: per
/// step one matrix multiply (`gemm`, accumulating onto the step's input
/// projection) and the gates in one pass, with a vectorisable `exp`. Used
/// when nothing needs a gradient; the candle path above is the reference
/// and the training path.
pub(crate) mod fast {
    use candle_core::{Device, Tensor};

    use super::{Cell, DirOut, RnnParams, RnnSpec};
    use crate::Result;

    fn data(t: &Tensor) -> Result<Vec<f32>> {
        Ok(t.flatten_all()?.to_vec1::<f32>()?)
    }

    /// `exp(x)` to about 2e-7 relative error, branch-free so the loops
    /// around it vectorise: `2^n * p(r)` with `x = n ln 2 + r`, `|r| <= ln 2 / 2`.
    #[inline(always)]
    fn exp(x: f32) -> f32 {
        // Plain comparisons (not `clamp`): they vectorise.
        let x = if x < -87.3 { -87.3 } else { x };
        let x = if x > 88.3 { 88.3 } else { x };
        let t = x * std::f32::consts::LOG2_E;
        // Round to nearest with the 1.5 * 2^23 trick (no SSE4.1 needed).
        let n = (t + 12_582_912.0) - 12_582_912.0;
        let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
        // SAFETY: `n` is whole and in [-126, 127] (from the clamp), so it
        // is representable; the unchecked conversion, unlike `as`, vectorises.
        let n: i32 = unsafe { n.to_int_unchecked() };
        p * f32::from_bits(((n + 127) << 23) as u32)
    }

    #[inline(always)]
    fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + exp(-x))
    }

    #[inline(always)]
    fn tanh(x: f32) -> f32 {
        1.0 - 2.0 / (exp(2.0 * x) + 1.0)
    }

    /// `dst (+)= lhs x rhs` for `m x k` by `k x n`, each operand and the
    /// result given by its element strides `(row, column)`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn matmul(
        dst: &mut [f32],
        (d_rs, d_cs): (usize, usize),
        acc: bool,
        lhs: &[f32],
        (l_rs, l_cs): (usize, usize),
        rhs: &[f32],
        (r_rs, r_cs): (usize, usize),
        (m, n, k): (usize, usize, usize),
    ) {
        let last = |rs: usize, cs: usize, rows: usize, cols: usize| {
            (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
        };
        // The strides must stay inside the slices: checked, not assumed.
        if m == 0
            || n == 0
            || k == 0
            || last(d_rs, d_cs, m, n) >= dst.len()
            || last(l_rs, l_cs, m, k) >= lhs.len()
            || last(r_rs, r_cs, k, n) >= rhs.len()
        {
            return;
        }
        let par = if m * n * k >= 1 << 22 {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: every element the strides reach is inside its slice
        // (checked above).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                d_cs as isize,
                d_rs as isize,
                acc,
                lhs.as_ptr(),
                l_cs as isize,
                l_rs as isize,
                rhs.as_ptr(),
                r_cs as isize,
                r_rs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        }
    }

    /// `sigmoid` over a slice, in place: 8 lanes at a time with AVX2 and
    /// FMA (LLVM leaves the scalar loop scalar: the float-to-integer
    /// conversion in `exp` defeats its vectoriser), else the plain loop.
    pub(crate) fn sigmoid_all(v: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                return unsafe { simd::activate::<false>(v) };
            }
        }
        for x in v.iter_mut() {
            *x = sigmoid(*x);
        }
    }

    /// `tanh` over a slice, in place, as [`sigmoid_all`].
    pub(crate) fn tanh_all(v: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                return unsafe { simd::activate::<true>(v) };
            }
        }
        for x in v.iter_mut() {
            *x = tanh(*x);
        }
    }

    /// The activations with AVX2 and FMA intrinsics: the same `exp` as the
    /// scalar one (range reduction by `ln 2`, degree-6 polynomial, the
    /// exponent written into the bits), 8 lanes at a time.
    #[cfg(target_arch = "x86_64")]
    pub(crate) mod simd {
        use std::arch::x86_64::*;

        /// # Safety
        /// The CPU has AVX2 and FMA.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
            // SAFETY: register-only intrinsics, on a CPU that has them.
            unsafe { exp8_body(x) }
        }

        #[inline(always)]
        unsafe fn exp8_body(x: __m256) -> __m256 {
            let x = _mm256_min_ps(
                _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
                _mm256_set1_ps(88.3),
            );
            let t = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E));
            let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
            let mut p = _mm256_set1_ps(1.0 / 720.0);
            for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
            }
            let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvtps_epi32(n),
                _mm256_set1_epi32(127),
            ));
            _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
        }

        /// `sigmoid` (`TANH = false`) or `tanh` over `v`, in place.
        ///
        /// # Safety
        /// The CPU has AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn activate<const TANH: bool>(v: &mut [f32]) {
            let mut chunks = v.chunks_exact_mut(8);
            for c in &mut chunks {
                // SAFETY: `c` holds 8 floats; the CPU has AVX2 and FMA.
                unsafe {
                    let one = _mm256_set1_ps(1.0);
                    let x = _mm256_loadu_ps(c.as_ptr());
                    let y = if TANH {
                        let e = exp8(_mm256_add_ps(x, x));
                        let two = _mm256_set1_ps(2.0);
                        _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one)))
                    } else {
                        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
                        _mm256_div_ps(one, _mm256_add_ps(one, e))
                    };
                    _mm256_storeu_ps(c.as_mut_ptr(), y);
                }
            }
            for x in chunks.into_remainder() {
                *x = if TANH {
                    super::tanh(*x)
                } else {
                    super::sigmoid(*x)
                };
            }
        }

        #[cfg(test)]
        mod tests {
            /// The 8-lane activations equal the scalar ones (the same
            /// polynomial), from far negative to far positive, with a tail.
            #[test]
            fn simd_activations_equal_the_scalar_ones() {
                if !(std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma"))
                {
                    return;
                }
                let xs: Vec<f32> = (0..1003).map(|i| (i as f32 - 501.0) / 5.0).collect();
                for tanh in [false, true] {
                    let mut v = xs.clone();
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    unsafe {
                        if tanh {
                            super::activate::<true>(&mut v)
                        } else {
                            super::activate::<false>(&mut v)
                        }
                    };
                    for (&x, &y) in xs.iter().zip(&v) {
                        let want = if tanh {
                            super::super::tanh(x)
                        } else {
                            super::super::sigmoid(x)
                        };
                        assert!(
                            (y - want).abs() <= 1e-6,
                            "tanh {tanh}: f({x}) = {y}, scalar {want}"
                        );
                        let exact = if tanh {
                            x.tanh()
                        } else {
                            1.0 / (1.0 + (-x).exp())
                        };
                        assert!(
                            (y - exact).abs() <= 1e-6,
                            "tanh {tanh}: f({x}) = {y}, exact {exact}"
                        );
                    }
                }
            }
        }
    }

    /// A plain RNN cell's step for one row: `h = tanh(g)` (the gates
    /// activated in place) or `relu(g)`.
    pub(crate) fn rnn_row(cell: Cell, gr: &mut [f32], hr: &mut [f32]) {
        if cell == Cell::RnnRelu {
            for (h, &x) in hr.iter_mut().zip(gr.iter()) {
                *h = x.max(0.0);
            }
        } else {
            tanh_all(gr);
            hr.copy_from_slice(gr);
        }
    }

    /// The LSTM cell on one row: gates `[i | f | g | o]` (each `hid`, turned
    /// into activations in place), the cell state updated in place, the
    /// hidden state written to `h`.
    pub(crate) fn lstm_row(gr: &mut [f32], c: &mut [f32], h: &mut [f32], hid: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                return unsafe { lstm_row_avx2(gr, c, h, hid) };
            }
        }
        lstm_row_body(gr, c, h, hid)
    }

    /// [`lstm_row`] compiled for AVX2 and FMA: the same loops, 8 lanes wide
    /// (the crate is built for the x86-64 baseline, 4 lanes of SSE2).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lstm_row_avx2(gr: &mut [f32], c: &mut [f32], h: &mut [f32], hid: usize) {
        lstm_row_body(gr, c, h, hid)
    }

    #[inline(always)]
    fn lstm_row_body(gr: &mut [f32], c: &mut [f32], h: &mut [f32], hid: usize) {
        sigmoid_all(&mut gr[..2 * hid]);
        tanh_all(&mut gr[2 * hid..3 * hid]);
        sigmoid_all(&mut gr[3 * hid..4 * hid]);
        let (i, rest) = gr.split_at(hid);
        let (f, rest) = rest.split_at(hid);
        let (g, o) = rest.split_at(hid);
        let (c, h) = (&mut c[..hid], &mut h[..hid]);
        for j in 0..hid {
            c[j] = f[j] * c[j] + i[j] * g[j];
        }
        h.copy_from_slice(c);
        tanh_all(h);
        for j in 0..hid {
            h[j] *= o[j];
        }
    }

    /// The GRU cell on one row: input parts `[r | z | n]` (in place),
    /// recurrent parts the same, `b_hn` inside the reset product; `h`
    /// updated in place.
    pub(crate) fn gru_row(gr: &mut [f32], hh: &[f32], b_hn: &[f32], h: &mut [f32], hid: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                return unsafe { gru_row_avx2(gr, hh, b_hn, h, hid) };
            }
        }
        gru_row_body(gr, hh, b_hn, h, hid)
    }

    /// [`gru_row`] compiled for AVX2 and FMA, as [`lstm_row_avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn gru_row_avx2(gr: &mut [f32], hh: &[f32], b_hn: &[f32], h: &mut [f32], hid: usize) {
        gru_row_body(gr, hh, b_hn, h, hid)
    }

    #[inline(always)]
    fn gru_row_body(gr: &mut [f32], hh: &[f32], b_hn: &[f32], h: &mut [f32], hid: usize) {
        let (rz, n) = gr.split_at_mut(2 * hid);
        for (x, y) in rz.iter_mut().zip(&hh[..2 * hid]) {
            *x += y;
        }
        sigmoid_all(rz);
        let (r, z) = rz.split_at(hid);
        let (hn, b_hn, n, h) = (
            &hh[2 * hid..3 * hid],
            &b_hn[..hid],
            &mut n[..hid],
            &mut h[..hid],
        );
        for j in 0..hid {
            n[j] += r[j] * (hn[j] + b_hn[j]);
        }
        tanh_all(n);
        for j in 0..hid {
            h[j] = n[j] + z[j] * (h[j] - n[j]);
        }
    }

    /// How many threads the step loops split a layer's hidden units
    /// between: at least 32 units each, and only where the per-step
    /// product (`B·G·H·H` multiply-adds, at least 2^18) pays for a barrier
    /// per step; below 2, the one-thread loop runs.
    pub(crate) fn split_threads(batch: usize, gh: usize, hid: usize) -> usize {
        if batch * gh * hid >= 1 << 18 {
            rayon::current_num_threads().min(hid / 32)
        } else {
            1
        }
    }

    /// Runs `worker(i)` for `i < threads` at once: on the calling thread
    /// and `threads - 1` scoped ones (not the pool's, which may not all be
    /// free: the workers wait for each other at every step).
    pub(crate) fn on_threads(threads: usize, worker: impl Fn(usize) + Sync) {
        std::thread::scope(|s| {
            for i in 1..threads {
                let worker = &worker;
                s.spawn(move || worker(i));
            }
            worker(0);
        });
    }

    /// A barrier for the step loop's threads: they spin (the wait is a
    /// step's product, tens of microseconds), then yield to the scheduler
    /// if a thread is late (a loaded machine).
    pub(crate) struct StepBarrier {
        arrived: std::sync::atomic::AtomicUsize,
        generation: std::sync::atomic::AtomicUsize,
        parties: usize,
    }

    impl StepBarrier {
        pub(crate) fn new(parties: usize) -> StepBarrier {
            StepBarrier {
                arrived: 0.into(),
                generation: 0.into(),
                parties,
            }
        }

        pub(crate) fn wait(&self) {
            use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
            let gen = self.generation.load(Acquire);
            if self.arrived.fetch_add(1, AcqRel) + 1 == self.parties {
                self.arrived.store(0, Relaxed);
                self.generation.fetch_add(1, Release);
                return;
            }
            let mut spins = 0u32;
            while self.generation.load(Acquire) == gen {
                if spins < 1 << 16 {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Buffers the step loop's threads share, each writing only its own
    /// hidden units' columns.
    #[derive(Clone, Copy)]
    pub(crate) struct Cols(*mut f32);
    // SAFETY: the threads of `split_units` write disjoint columns, and read
    // the other threads' columns only after the step's barrier.
    unsafe impl Send for Cols {}
    unsafe impl Sync for Cols {}

    impl Cols {
        pub(crate) fn of(v: &mut [f32]) -> Cols {
            Cols(v.as_mut_ptr())
        }

        /// `len` floats from `at` (a method, so closures capture the whole
        /// `Cols`).
        ///
        /// # Safety
        /// In bounds, and no other thread reads or writes them meanwhile.
        pub(crate) unsafe fn slice<'a>(self, at: usize, len: usize) -> &'a mut [f32] {
            // SAFETY: as the caller promises.
            unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
        }

        /// The pointer `at` floats in (a method, as [`Cols::slice`]).
        pub(crate) fn at(self, at: usize) -> *mut f32 {
            self.0.wrapping_add(at)
        }

        /// `len` floats from `at`, to read.
        ///
        /// # Safety
        /// In bounds, and no thread writes them meanwhile.
        pub(crate) unsafe fn read<'a>(self, at: usize, len: usize) -> &'a [f32] {
            // SAFETY: as the caller promises.
            unsafe { std::slice::from_raw_parts(self.0.add(at), len) }
        }
    }

    /// What the step loop needs besides the buffers it writes.
    pub(crate) struct StepLoop<'a> {
        pub xp: &'a [f32],
        pub w_hh: &'a [f32],
        pub b_hn: &'a [f32],
        pub lens: Option<&'a [usize]>,
        pub cell: Cell,
        pub reverse: bool,
        pub t_len: usize,
        pub batch: usize,
        pub hid: usize,
        /// Training: past a sequence's end the output is the carried `h`
        /// (inference: zero).
        pub carry: bool,
    }

    /// Training's record of each step for the backward, `[T, B, wd]`: an
    /// LSTM's `[c | i f g o]` (`wd` = 5H), a GRU's `[r z n | hn + b_hn]`
    /// (4H); nothing for an RNN.
    pub(crate) struct Keep<'a>(pub &'a mut [f32]);

    /// The step loop of an unprojected layer with its hidden units split
    /// between `threads` threads for the whole sequence: each packs the
    /// rows of `W_hh` of its units (every gate's), and per step runs its
    /// part of the recurrent product and its units' gates, then waits at a
    /// barrier for the others' `h`. One spawn per direction instead of a
    /// fork and join of the thread pool per step, and the gates' arithmetic
    /// split too. `h` is double-buffered: step `t` reads one buffer and
    /// writes the other. Returns the output sequence and the final `h`;
    /// `c` is updated in place.
    pub(crate) fn split_units(
        l: &StepLoop,
        h0: Vec<f32>,
        c: &mut [f32],
        keep: Option<Keep>,
        threads: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let StepLoop {
            t_len, batch, hid, ..
        } = *l;
        let g = l.cell.gates();
        let gh = g * hid;
        let mut bufs = [h0.clone(), h0];
        let mut out = vec![0.0f32; t_len * batch * hid];
        let barrier = StepBarrier::new(threads);
        let (h_a, h_b) = {
            let [a, b] = &mut bufs;
            (Cols(a.as_mut_ptr()), Cols(b.as_mut_ptr()))
        };
        let (out_p, c_p) = (Cols(out.as_mut_ptr()), Cols(c.as_mut_ptr()));
        let wd = keep
            .as_ref()
            .map_or(0, |k| k.0.len() / (t_len * batch).max(1));
        let keep_p = keep.map(|k| Cols(k.0.as_mut_ptr()));
        let worker = |i: usize| {
            let (u0, u1) = (hid * i / threads, hid * (i + 1) / threads);
            let nu = u1 - u0;
            let cols = g * nu;
            let mut rows = Vec::with_capacity(cols * hid);
            for gi in 0..g {
                rows.extend_from_slice(&l.w_hh[(gi * hid + u0) * hid..(gi * hid + u1) * hid]);
            }
            let w = crate::rnn_kernel::Packed::new(&rows, cols, hid);
            let mut gates = vec![0.0f32; batch * cols];
            let mut hh = vec![0.0f32; if l.cell == Cell::Gru { batch * cols } else { 0 }];
            for step in 0..t_len {
                let t = if l.reverse { t_len - 1 - step } else { step };
                let (prev, next) = if step % 2 == 0 {
                    (h_a, h_b)
                } else {
                    (h_b, h_a)
                };
                // SAFETY: every thread only reads `prev` in this step (its
                // writes were before the last barrier).
                let prev = unsafe { prev.read(0, batch * hid) };
                for b in 0..batch {
                    let src = &l.xp[(t * batch + b) * gh..(t * batch + b + 1) * gh];
                    for gi in 0..g {
                        gates[b * cols + gi * nu..b * cols + (gi + 1) * nu]
                            .copy_from_slice(&src[gi * hid + u0..gi * hid + u1]);
                    }
                }
                if l.cell == Cell::Gru {
                    crate::rnn_kernel::recurrent_serial(&mut hh, false, prev, batch, &w);
                } else {
                    crate::rnn_kernel::recurrent_serial(&mut gates, true, prev, batch, &w);
                }
                for b in 0..batch {
                    // SAFETY: row b's columns u0..u1 of `next`, `c` and `out`
                    // are this thread's alone.
                    let (hr, o) = unsafe {
                        (
                            next.slice(b * hid + u0, nu),
                            out_p.slice((t * batch + b) * hid + u0, nu),
                        )
                    };
                    let before = &prev[b * hid + u0..b * hid + u1];
                    // SAFETY: row (t, b)'s columns of this thread's units
                    // (below) are its alone.
                    let kept = |at: usize, len: usize| {
                        keep_p.map(|k| unsafe { k.slice((t * batch + b) * wd + at, len) })
                    };
                    let put = |at: usize, src: &[f32]| {
                        if let Some(k) = kept(at, src.len()) {
                            k.copy_from_slice(src);
                        }
                    };
                    if l.lens.is_some_and(|n| n.get(b).is_none_or(|&n| t >= n)) {
                        // Past this sequence's end: the state stays, the
                        // output is zero (inference) or the carried state
                        // (training, whose backward also reads the carried
                        // cell state).
                        hr.copy_from_slice(before);
                        if l.carry {
                            o.copy_from_slice(before);
                        }
                        if let (Cell::Lstm, Some(k)) = (l.cell, kept(u0, nu)) {
                            // SAFETY: as above.
                            k.copy_from_slice(unsafe { c_p.slice(b * hid + u0, nu) });
                        }
                        continue;
                    }
                    let gr = &mut gates[b * cols..(b + 1) * cols];
                    match l.cell {
                        Cell::RnnTanh | Cell::RnnRelu => rnn_row(l.cell, gr, hr),
                        Cell::Lstm => {
                            // SAFETY: as above.
                            let cr = unsafe { c_p.slice(b * hid + u0, nu) };
                            lstm_row(gr, cr, hr, nu);
                            // Kept: [c | i f g o], this thread's units of each.
                            put(u0, cr);
                            for gi in 0..4 {
                                put(hid + gi * hid + u0, &gr[gi * nu..(gi + 1) * nu]);
                            }
                        }
                        Cell::Gru => {
                            hr.copy_from_slice(before);
                            let hhr = &hh[b * cols..(b + 1) * cols];
                            gru_row(gr, hhr, &l.b_hn[u0..u1], hr, nu);
                            // Kept: [r z n | hn + b_hn].
                            for gi in 0..3 {
                                put(gi * hid + u0, &gr[gi * nu..(gi + 1) * nu]);
                            }
                            if let Some(hn) = kept(3 * hid + u0, nu) {
                                for ((o, &x), &bn) in
                                    hn.iter_mut().zip(&hhr[2 * nu..]).zip(&l.b_hn[u0..u1])
                                {
                                    *o = x + bn;
                                }
                            }
                        }
                    }
                    o.copy_from_slice(hr);
                }
                barrier.wait();
            }
        };
        on_threads(threads, worker);
        let [a, b] = bufs;
        (out, if t_len % 2 == 0 { a } else { b })
    }

    /// An unprojected LSTM direction of inference on the fused kernel
    /// (`crate::lstm_step`): the input projection, the recurrent product
    /// and the cell in one pass per step, the hidden units split between
    /// `threads` threads for the whole sequence as in [`split_units`].
    /// `x` is `[T, B, F]`, `bias` both biases summed; `c` is updated in
    /// place. Returns the output sequence and the final `h`, or `None`
    /// (nothing run) where a buffer is too short for the sizes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fused_lstm(
        x: &[f32],
        w_ih: &[f32],
        w_hh: &[f32],
        bias: &[f32],
        (t_len, batch, feat, hid): (usize, usize, usize, usize),
        reverse: bool,
        lens: Option<&[usize]>,
        h0: Vec<f32>,
        c: &mut [f32],
        (threads, packed): (usize, Option<&[crate::lstm_step::LstmPacked]>),
    ) -> Option<(Vec<f32>, Vec<f32>)> {
        let state = batch * hid;
        if !crate::lstm_step::available()
            || threads == 0
            || x.len() < t_len * batch * feat
            || bias.len() < 4 * hid
            || h0.len() < state
            || c.len() < state
            || w_ih.len() < 4 * hid * feat
            || w_hh.len() < 4 * hid * hid
            || packed.is_some_and(|p| {
                p.len() != threads
                    || p.iter().enumerate().any(|(i, w)| {
                        !w.fits(feat, hid, hid * (i + 1) / threads - hid * i / threads)
                    })
            })
        {
            return None;
        }
        let mut bufs = [h0.clone(), h0];
        let mut out = vec![0.0f32; t_len * state];
        let barrier = StepBarrier::new(threads);
        let (h_a, h_b) = {
            let [a, b] = &mut bufs;
            (Cols(a.as_mut_ptr()), Cols(b.as_mut_ptr()))
        };
        let (out_p, c_p) = (Cols(out.as_mut_ptr()), Cols(c.as_mut_ptr()));
        let worker = |i: usize| {
            let (u0, u1) = (hid * i / threads, hid * (i + 1) / threads);
            // Packed before (one per thread, checked above), or here:
            // the sizes fit (checked above), so every thread packs.
            let own;
            let w = match packed {
                Some(p) => &p[i],
                None => match crate::lstm_step::LstmPacked::new(w_ih, w_hh, feat, hid, u0..u1) {
                    Some(w) => {
                        own = w;
                        &own
                    }
                    None => return,
                },
            };
            for step in 0..t_len {
                let t = if reverse { t_len - 1 - step } else { step };
                let (prev, next) = if step % 2 == 0 {
                    (h_a, h_b)
                } else {
                    (h_b, h_a)
                };
                let io = crate::lstm_step::StepIo {
                    bias: bias[u0..].as_ptr(),
                    x: x[t * batch * feat..].as_ptr(),
                    x_stride: feat,
                    h_prev: prev.at(0),
                    h_keep: prev.at(u0),
                    c: c_p.at(u0),
                    h_next: next.at(u0),
                    out: out_p.at(t * state + u0),
                    state_stride: hid,
                };
                let live = |b: usize| lens.is_none_or(|n| n.get(b).is_some_and(|&n| t < n));
                // SAFETY: `available` (checked above); `w` holds this
                // thread's units u0..u1; `bias` has 4·hid floats, `x`
                // `batch` rows of `feat` for step t, `prev`, `next` and
                // `c` `batch` rows of `hid`, `out` `t_len · batch` of them
                // (all checked above); this thread writes only its units'
                // columns of `next`, `c` and `out`, and every thread only
                // reads `prev` until the barrier.
                unsafe { crate::lstm_step::step(w, io, batch, live) };
                barrier.wait();
            }
        };
        on_threads(threads, worker);
        let [a, b] = bufs;
        Some((out, if t_len % 2 == 0 { a } else { b }))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn direction(
        xs: &Tensor,
        p: &RnnParams,
        k: usize,
        spec: RnnSpec,
        reverse: bool,
        h0: &Tensor,
        c0: Option<&Tensor>,
        lens: Option<&[usize]>,
        packs: Option<&crate::lstm_step::LstmPacks>,
    ) -> Result<DirOut> {
        let (t_len, batch, feat) = xs.dims3()?;
        let (hid, hout, g) = (spec.hidden, spec.out_size(), spec.cell.gates());
        let gh = g * hid;
        let gru = spec.cell == Cell::Gru;
        // The input projection of every step, biases first: [T·B, G·H].
        let mut bias = vec![0.0f32; gh];
        let mut b_hn = vec![0.0f32; hid];
        if let Some(b) = p.bias_ih.get(k) {
            bias.iter_mut().zip(data(b)?).for_each(|(a, b)| *a += b);
        }
        if let Some(b) = p.bias_hh.get(k) {
            let b = data(b)?;
            let folded = if gru { 2 * hid } else { gh };
            bias[..folded].iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            if gru {
                b_hn.copy_from_slice(&b[2 * hid..]);
            }
        }
        // An unprojected LSTM where the fused kernel runs: no projection
        // pass. Split between threads as the unfused loop would be, or on
        // the one thread there is. The input and the weights are read
        // where they lie (contiguous f32 CPU tensors; else copied).
        let threads = split_threads(batch, gh, hid);
        if spec.cell == Cell::Lstm
            && p.weight_hr.get(k).is_none()
            && (threads >= 2 || rayon::current_num_threads() == 1)
        {
            let mut c = match c0 {
                Some(c) => data(c)?,
                None => vec![0.0; batch * hid],
            };
            let (xs, w_ih, w_hh) = (
                xs.contiguous()?,
                p.weight_ih[k].contiguous()?,
                p.weight_hh[k].contiguous()?,
            );
            let h0 = data(h0)?;
            let fused = crate::host::with_f32(&xs, |x| {
                crate::host::with_f32(&w_ih, |w_ih| {
                    crate::host::with_f32(&w_hh, |w_hh| {
                        let threads = threads.max(1);
                        let cached = packs.and_then(|p| {
                            p.get_or_pack(k, threads, || {
                                (0..threads)
                                    .map(|i| {
                                        let units = hid * i / threads..hid * (i + 1) / threads;
                                        crate::lstm_step::LstmPacked::new(
                                            w_ih, w_hh, feat, hid, units,
                                        )
                                    })
                                    .collect()
                            })
                        });
                        fused_lstm(
                            x,
                            w_ih,
                            w_hh,
                            &bias,
                            (t_len, batch, feat, hid),
                            reverse,
                            lens,
                            h0,
                            &mut c,
                            (threads, cached.as_deref().map(Vec::as_slice)),
                        )
                    })
                })
            });
            if let Some(Some(Some(Some((out, h))))) = fused {
                let dev = Device::Cpu;
                return Ok((
                    Tensor::from_vec(out, (t_len, batch, hid), &dev)?,
                    Tensor::from_vec(h, (batch, hid), &dev)?,
                    Some(Tensor::from_vec(c, (batch, hid), &dev)?),
                ));
            }
        }
        let rows = t_len * batch;
        let x = data(xs)?;
        let w_ih = data(&p.weight_ih[k])?;
        // xp = bias + x [rows, F] x W_ih^T (W_ih is [G·H, F] row-major),
        // the bias the kernel's starting row.
        let mut xp = Vec::with_capacity(rows * gh);
        let written = crate::rnn_kernel::product_into(
            &mut xp.spare_capacity_mut()[..rows * gh],
            Some(&bias),
            &x,
            rows,
            &crate::rnn_kernel::Packed::new(&w_ih, gh, feat),
            crate::conv::Epilogue::None,
        );
        if !written {
            return Err(candle_core::Error::Msg(format!(
                "rnn: the input {:?} does not fit weight_ih_l{k} {:?}",
                xs.dims(),
                p.weight_ih[k].dims()
            ))
            .into());
        }
        // SAFETY: `product_into` wrote all `rows * gh` values.
        unsafe { xp.set_len(rows * gh) };
        // Big enough to split (an unprojected layer): the hidden units
        // between the threads for the whole sequence.
        if p.weight_hr.get(k).is_none() && threads >= 2 {
            let mut c = match c0 {
                Some(c) => data(c)?,
                None => vec![0.0; batch * hid],
            };
            let w_hh = data(&p.weight_hh[k])?;
            let steps = StepLoop {
                xp: &xp,
                w_hh: &w_hh,
                b_hn: &b_hn,
                lens,
                cell: spec.cell,
                reverse,
                t_len,
                batch,
                hid,
                carry: false,
            };
            let (out, h) = split_units(&steps, data(h0)?, &mut c, None, threads);
            let dev = Device::Cpu;
            let c = if spec.cell == Cell::Lstm {
                Some(Tensor::from_vec(c, (batch, hid), &dev)?)
            } else {
                None
            };
            return Ok((
                Tensor::from_vec(out, (t_len, batch, hid), &dev)?,
                Tensor::from_vec(h, (batch, hid), &dev)?,
                c,
            ));
        }
        // W_hh [G·H, H_out] packed once for the recurrent product's kernel.
        let w_hh = crate::rnn_kernel::Packed::new(&data(&p.weight_hh[k])?, gh, hout);
        let w_hr = match p.weight_hr.get(k) {
            Some(w) => Some(data(w)?),
            None => None,
        };
        let mut h = data(h0)?;
        let mut c = match c0 {
            Some(c) => data(c)?,
            None => vec![0.0; batch * hid],
        };
        let mut out = vec![0.0f32; t_len * batch * hout];
        let mut gates = vec![0.0f32; batch * gh];
        let mut hh = vec![0.0f32; if gru { batch * gh } else { 0 }];
        let mut full = vec![0.0f32; if w_hr.is_some() { batch * hid } else { 0 }];
        let mut proj = vec![0.0f32; if w_hr.is_some() { batch * hout } else { 0 }];
        for step in 0..t_len {
            let t = if reverse { t_len - 1 - step } else { step };
            let live = |b: usize| lens.is_none_or(|l| l.get(b).is_some_and(|&n| t < n));
            gates.copy_from_slice(&xp[t * batch * gh..(t + 1) * batch * gh]);
            // gates[b, :] (+)= W_hh h[b, :], a row per batch element.
            let (dst, acc) = if gru {
                (&mut hh, false)
            } else {
                (&mut gates, true)
            };
            crate::rnn_kernel::recurrent(dst, acc, &h, batch, &w_hh);
            for b in (0..batch).filter(|&b| live(b)) {
                let gr = &mut gates[b * gh..(b + 1) * gh];
                let hr = &mut h[b * hout..(b + 1) * hout];
                match spec.cell {
                    Cell::RnnTanh | Cell::RnnRelu => rnn_row(spec.cell, gr, hr),
                    Cell::Lstm => {
                        let cr = &mut c[b * hid..(b + 1) * hid];
                        match w_hr {
                            Some(_) => lstm_row(gr, cr, &mut full[b * hid..(b + 1) * hid], hid),
                            None => lstm_row(gr, cr, hr, hid),
                        }
                    }
                    Cell::Gru => gru_row(gr, &hh[b * gh..(b + 1) * gh], &b_hn, hr, hid),
                }
            }
            if let Some(w) = &w_hr {
                // proj = full [B, H] x W_hr^T (W_hr is [H_out, H]).
                matmul(
                    &mut proj,
                    (hout, 1),
                    false,
                    &full,
                    (hid, 1),
                    w,
                    (1, hid),
                    (batch, hout, hid),
                );
                for b in (0..batch).filter(|&b| live(b)) {
                    h[b * hout..(b + 1) * hout].copy_from_slice(&proj[b * hout..(b + 1) * hout]);
                }
            }
            let o = &mut out[t * batch * hout..(t + 1) * batch * hout];
            for b in (0..batch).filter(|&b| live(b)) {
                o[b * hout..(b + 1) * hout].copy_from_slice(&h[b * hout..(b + 1) * hout]);
            }
        }
        let dev = Device::Cpu;
        let out = Tensor::from_vec(out, (t_len, batch, hout), &dev)?;
        let h = Tensor::from_vec(h, (batch, hout), &dev)?;
        let c = if spec.cell == Cell::Lstm {
            Some(Tensor::from_vec(c, (batch, hid), &dev)?)
        } else {
            None
        };
        Ok((out, h, c))
    }
}

/// The parity tests' measure (`max |a - b| / max(1, max |b|)`), their own
/// copy, for the unit tests below and `activation`'s.
#[cfg(test)]
#[path = "../tests/common/compare.rs"]
#[allow(dead_code)] // `formula` is for the integration tests
pub(crate) mod parity;

/// The whole-sequence op against the step-by-step candle path, the
/// reference it replaces in training: outputs, final states and every
/// gradient, for each cell, both directions, with and without lengths and
/// initial states.
#[cfg(test)]
mod whole_tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;

    use super::parity::{max_abs_diff as max_diff, rel_err};

    /// One layer of `cell`, `hid` units, time-major, no projection.
    fn one_layer(cell: Cell, hid: usize) -> RnnSpec {
        RnnSpec {
            cell,
            hidden: hid,
            proj: 0,
            layers: 1,
            bidirectional: false,
            batch_first: false,
            dropout: 0.0,
        }
    }

    fn rand(shape: &[usize], seed: u64) -> Var {
        // A fixed pseudo-random fill in (-1, 1).
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// One layer's weights (`g` gate rows over `feat` inputs and `hid`
    /// units) and biases from seeds `seed + 1 ..= seed + 4`, `W_hh` scaled
    /// by `scale` to keep the states from saturating.
    fn one_layer_params(g: usize, feat: usize, hid: usize, seed: u64, scale: f64) -> RnnParams {
        RnnParams {
            weight_ih: vec![rand(&[g, feat], seed + 1).as_tensor().clone()],
            weight_hh: vec![rand(&[g, hid], seed + 2)
                .as_tensor()
                .affine(scale, 0.0)
                .unwrap()],
            bias_ih: vec![rand(&[g], seed + 3).as_tensor().clone()],
            bias_hh: vec![rand(&[g], seed + 4).as_tensor().clone()],
            weight_hr: vec![],
        }
    }

    /// Inference's step loop with the hidden units split between threads
    /// (a layer big enough: 128 units, batch 24) equals the step-by-step
    /// reference and the one-thread loop, for every cell, both directions,
    /// with lengths and initial states; 3 threads split 128 units unevenly.
    #[test]
    fn the_split_step_loop_equals_the_reference() {
        let (t_len, batch, feat, hid) = (4, 24, 8, 128);
        let lens: Vec<usize> = (0..batch).map(|b| 1 + b % t_len).collect();
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let (one, three) = (pool(1), pool(3));
        for (ci, cell) in [Cell::RnnTanh, Cell::RnnRelu, Cell::Lstm, Cell::Gru]
            .into_iter()
            .enumerate()
        {
            for (reverse, with_lens) in [(false, false), (true, true), (false, true)] {
                let seed = 1000 + ci as u64 * 10 + u64::from(reverse) * 2 + u64::from(with_lens);
                let g = cell.gates() * hid;
                let x = rand(&[t_len, batch, feat], seed);
                let p = one_layer_params(g, feat, hid, seed, 0.2);
                let spec = one_layer(cell, hid);
                let h0 = rand(&[batch, hid], seed + 5).as_tensor().clone();
                let c0 =
                    (cell == Cell::Lstm).then(|| rand(&[batch, hid], seed + 6).as_tensor().clone());
                let l = with_lens.then_some(&lens[..]);
                let xs = x.as_tensor();
                let masks = l.map(|l| step_masks(l, t_len, DType::F32, xs).unwrap());
                let want = direction(
                    xs,
                    &p,
                    0,
                    spec,
                    reverse,
                    h0.clone(),
                    c0.clone(),
                    masks.as_deref(),
                    cell.gates(),
                )
                .unwrap();
                let run = |pool: &rayon::ThreadPool| {
                    pool.install(|| {
                        fast::direction(xs, &p, 0, spec, reverse, &h0, c0.as_ref(), l, None)
                            .unwrap()
                    })
                };
                let (serial, split) = (run(&one), run(&three));
                let case = format!("{cell:?} reverse {reverse} lengths {with_lens}");
                for (what, a, b) in [
                    ("output", &split.0, &want.0),
                    ("h", &split.1, &want.1),
                    ("output vs one thread", &split.0, &serial.0),
                    ("h vs one thread", &split.1, &serial.1),
                ] {
                    let d = max_diff(a, b);
                    assert!(d < 1e-4, "{case}: {what} differs by {d}");
                }
                if let (Some(a), Some(b)) = (&split.2, &want.2) {
                    assert!(max_diff(a, b) < 1e-4, "{case}: c");
                }
            }
        }
    }

    /// The fused LSTM kernel of inference (`crate::lstm_step`, where the
    /// CPU has AVX-512) equals the step-by-step reference on one thread
    /// and split between two: a batch that leaves a partial tile of rows
    /// (13), hidden units that leave partial blocks (72 split 36 + 36),
    /// an input width that is none of the kernel's (5), both directions,
    /// lengths and initial states. Elsewhere it checks the unfused loop.
    #[test]
    fn the_fused_lstm_equals_the_reference() {
        let (t_len, batch, feat, hid) = (5, 13, 5, 72);
        let lens: Vec<usize> = (0..batch).map(|b| 1 + (b * 3) % t_len).collect();
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let (one, two) = (pool(1), pool(2));
        assert_eq!(two.install(|| fast::split_threads(batch, 4 * hid, hid)), 2);
        for (case, (reverse, with_lens, with_init)) in [
            (false, false, false),
            (true, false, true),
            (false, true, true),
            (true, true, false),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 2000 + 10 * case as u64;
            let g = 4 * hid;
            let x = rand(&[t_len, batch, feat], seed);
            let p = one_layer_params(g, feat, hid, seed, 0.3);
            let spec = one_layer(Cell::Lstm, hid);
            let (h0, c0) = if with_init {
                (
                    rand(&[batch, hid], seed + 5).as_tensor().clone(),
                    rand(&[batch, hid], seed + 6).as_tensor().clone(),
                )
            } else {
                let z = Tensor::zeros((batch, hid), DType::F32, &Device::Cpu).unwrap();
                (z.clone(), z)
            };
            let l = with_lens.then_some(&lens[..]);
            let xs = x.as_tensor();
            let masks = l.map(|l| step_masks(l, t_len, DType::F32, xs).unwrap());
            let want = direction(
                xs,
                &p,
                0,
                spec,
                reverse,
                h0.clone(),
                Some(c0.clone()),
                masks.as_deref(),
                4,
            )
            .unwrap();
            // Packed on each call, then packed once and kept (the first
            // call packs, the second reads the store).
            let kept = crate::lstm_step::LstmPacks::default();
            for (threads, pool, store) in [
                (1, &one, None),
                (2, &two, None),
                (1, &one, Some(&kept)),
                (1, &one, Some(&kept)),
                (2, &two, Some(&kept)),
                (2, &two, Some(&kept)),
            ] {
                let got = pool.install(|| {
                    fast::direction(xs, &p, 0, spec, reverse, &h0, Some(&c0), l, store).unwrap()
                });
                let what = format!(
                    "reverse {reverse} lengths {with_lens} init {with_init}, {threads} thread(s), kept {}",
                    store.is_some()
                );
                let c = (got.2.as_ref().unwrap(), want.2.as_ref().unwrap());
                for (part, a, b) in [
                    ("output", &got.0, &want.0),
                    ("h", &got.1, &want.1),
                    ("c", c.0, c.1),
                ] {
                    let d = max_diff(a, b);
                    assert!(d < 1e-5, "{what}: {part} differs by {d}");
                }
            }
        }
    }

    #[test]
    fn the_whole_sequence_op_equals_the_step_by_step_path() {
        whole_against_steps(5, 3, 4, 6, 1e-5);
    }

    /// The same at a size whose forward splits its 128 hidden units
    /// between 3 threads (unevenly) for the whole sequence; sums of 128
    /// terms in another order differ by about 1e-5 there.
    #[test]
    fn the_split_whole_sequence_op_equals_the_step_by_step_path() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| whole_against_steps(4, 24, 8, 128, 1e-4));
    }

    /// Outputs within `tol`, gradients within `10 * tol`, relative to the
    /// reference's largest magnitude (at least 1: `rel_err`).
    fn whole_against_steps(t_len: usize, batch: usize, feat: usize, hid: usize, tol: f32) {
        let lens: Vec<usize> = (0..batch)
            .map(|b| [5usize, 2, 4][b % 3].min(t_len))
            .collect();
        let cells = [Cell::RnnTanh, Cell::RnnRelu, Cell::Lstm, Cell::Gru];
        for (ci, cell) in cells.into_iter().enumerate() {
            for reverse in [false, true] {
                for with_lens in [false, true] {
                    for init in [false, true] {
                        for bias in [false, true] {
                            let seed = (ci * 16 + usize::from(reverse) * 8) as u64
                                + u64::from(with_lens) * 4
                                + u64::from(init) * 2
                                + u64::from(bias);
                            let g = cell.gates() * hid;
                            let x = rand(&[t_len, batch, feat], seed);
                            let w_ih = rand(&[g, feat], seed + 100);
                            let w_hh = rand(&[g, hid], seed + 200);
                            let b_ih = rand(&[g], seed + 300);
                            let b_hh = rand(&[g], seed + 400);
                            let h0 = rand(&[batch, hid], seed + 500);
                            let c0 = rand(&[batch, hid], seed + 600);
                            let p = RnnParams {
                                weight_ih: vec![w_ih.as_tensor().clone()],
                                weight_hh: vec![w_hh.as_tensor().clone()],
                                bias_ih: if bias {
                                    vec![b_ih.as_tensor().clone()]
                                } else {
                                    vec![]
                                },
                                bias_hh: if bias {
                                    vec![b_hh.as_tensor().clone()]
                                } else {
                                    vec![]
                                },
                                weight_hr: vec![],
                            };
                            let spec = one_layer(cell, hid);
                            let h_init = if init {
                                h0.as_tensor().clone()
                            } else {
                                Tensor::zeros((batch, hid), DType::F32, &Device::Cpu).unwrap()
                            };
                            let c_init = (cell == Cell::Lstm).then(|| {
                                if init {
                                    c0.as_tensor().clone()
                                } else {
                                    Tensor::zeros((batch, hid), DType::F32, &Device::Cpu).unwrap()
                                }
                            });
                            let l = with_lens.then_some(&lens[..]);
                            let masks =
                                l.map(|l| step_masks(l, t_len, DType::F32, x.as_tensor()).unwrap());
                            let xs = x.as_tensor();
                            let want = direction(
                                xs,
                                &p,
                                0,
                                spec,
                                reverse,
                                h_init.clone(),
                                c_init.clone(),
                                masks.as_deref(),
                                cell.gates(),
                            )
                            .unwrap();
                            let got = whole_direction(
                                xs,
                                &p,
                                0,
                                spec,
                                reverse,
                                &h_init,
                                c_init.as_ref(),
                                l,
                            )
                            .unwrap();
                            let case = format!(
                                "{cell:?} reverse {reverse} lengths {with_lens} init {init} bias {bias}"
                            );
                            // A loss that weighs every output and final state differently.
                            let loss = |o: &DirOut| {
                                let mut l =
                                    o.0.mul(&rand(o.0.dims(), 7).as_tensor().clone())
                                        .unwrap()
                                        .sum_all()
                                        .unwrap()
                                        .add(
                                            &o.1.mul(rand(o.1.dims(), 8).as_tensor())
                                                .unwrap()
                                                .sum_all()
                                                .unwrap(),
                                        )
                                        .unwrap();
                                if let Some(c) = &o.2 {
                                    l = l
                                        .add(
                                            &c.mul(rand(c.dims(), 9).as_tensor())
                                                .unwrap()
                                                .sum_all()
                                                .unwrap(),
                                        )
                                        .unwrap();
                                }
                                l.backward().unwrap()
                            };
                            let d0 = rel_err(&got.0, &want.0);
                            assert!(d0 < tol, "{case}: output differs by {d0}");
                            assert!(rel_err(&got.1, &want.1) < tol, "{case}: h_n");
                            if let (Some(a), Some(b)) = (&want.2, &got.2) {
                                assert!(rel_err(b, a) < tol, "{case}: c_n");
                            }
                            let (gw, gg) = (loss(&want), loss(&got));
                            let mut vars = vec![("x", &x), ("w_ih", &w_ih), ("w_hh", &w_hh)];
                            if bias {
                                vars.extend([("b_ih", &b_ih), ("b_hh", &b_hh)]);
                            }
                            if init {
                                vars.push(("h0", &h0));
                                if cell == Cell::Lstm {
                                    vars.push(("c0", &c0));
                                }
                            }
                            for (name, v) in vars {
                                let a = gw.get(v.as_tensor()).unwrap();
                                let b = gg
                                    .get(v.as_tensor())
                                    .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
                                let d = rel_err(b, a);
                                assert!(
                                    d < 10.0 * tol,
                                    "{case}: gradient of {name} differs by {d}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
