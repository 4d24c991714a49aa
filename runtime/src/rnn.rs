//! Recurrent layers, PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU`: stacked,
//! bidirectional, batch-first or time-major, with optional initial states
//! and packed-sequence lengths.
//!
//! Each layer and direction projects its whole input sequence with one
//! matrix multiply (both biases folded in where the cell allows), then runs
//! the steps: one `[B, H] x [H, G·H]` multiply and the gate arithmetic per
//! step. Everything is candle tensor arithmetic, so gradients flow to the
//! parameters, the input and the initial states.
//!
//! candle-nn's own recurrent layers are not used: their backward direction
//! does not reverse time and their GRU sequence output is misshaped
//! (`../shared/candle-notes.md`).

use candle_core::{DType, Tensor};

use crate::modes::{dropout, Generator};
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
    let masks = match inputs.lengths {
        None => None,
        Some(l) => Some(step_masks(layer, l, t_len, batch, x.dtype(), x)?),
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
            let (out, hn, cn) = direction(
                &seq,
                p,
                k,
                spec,
                d == 1,
                h_init,
                c_init,
                masks.as_deref(),
                g,
            )?;
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

/// Per step `t`, a `[B, 1]` mask: 1 where `t < length`, 0 past the end.
fn step_masks(
    layer: &'static str,
    lengths: &Tensor,
    t_len: usize,
    batch: usize,
    dtype: DType,
    like: &Tensor,
) -> Result<Vec<Tensor>> {
    let lens: Vec<f64> = lengths
        .flatten_all()?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    if lens.len() != batch {
        return Err(bad(
            layer,
            format!("was given {} lengths for a batch of {batch}", lens.len()),
        ));
    }
    if let Some((b, &len)) = lens
        .iter()
        .enumerate()
        .find(|(_, &l)| l < 1.0 || l > t_len as f64 || l.fract() != 0.0)
    {
        return Err(bad(
            layer,
            format!(
                "sequence {b} has length {len}; lengths must be whole numbers in 1..={t_len} (the padded length)"
            ),
        ));
    }
    (0..t_len)
        .map(|t| {
            let m: Vec<f32> = lens
                .iter()
                .map(|&l| if (t as f64) < l { 1.0 } else { 0.0 })
                .collect();
            Ok(Tensor::from_vec(m, (batch, 1), like.device())?.to_dtype(dtype)?)
        })
        .collect()
}

/// `a * m + b * (1 - m)` with a `[B, 1]` mask.
fn blend(a: &Tensor, b: &Tensor, m: &Tensor) -> Result<Tensor> {
    // b + m * (a - b): two ops, exact where m is 0 or 1.
    Ok(b.broadcast_add(&a.sub(b)?.broadcast_mul(m)?)?)
}

type DirOut = (Tensor, Tensor, Option<Tensor>);

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
    let (t_len, batch, feat) = xs.dims3()?;
    let hid = spec.hidden;
    let w_ih = &p.weight_ih[k];
    let w_hh_t = p.weight_hh[k].t()?;
    let (b_ih, b_hh) = (p.bias_ih.get(k), p.bias_hh.get(k));
    // The input projection for every step at once: [T·B, G·H].
    let mut xp = xs.reshape((t_len * batch, feat))?.matmul(&w_ih.t()?)?;
    if let Some(b) = b_ih {
        xp = xp.broadcast_add(b)?;
    }
    // b_hh joins the input projection except for GRU's candidate gate,
    // where it sits inside `r * (W_hn h + b_hn)`.
    let mut b_hn = None;
    if let Some(b) = b_hh {
        if spec.cell == Cell::Gru {
            let rz = b.narrow(0, 0, 2 * hid)?;
            let zeros = Tensor::zeros(hid, b.dtype(), b.device())?;
            xp = xp.broadcast_add(&Tensor::cat(&[&rz, &zeros], 0)?)?;
            b_hn = Some(b.narrow(0, 2 * hid, hid)?);
        } else {
            xp = xp.broadcast_add(b)?;
        }
    }
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
                let i = sigmoid(&gates.narrow(1, 0, hid)?)?;
                let f = sigmoid(&gates.narrow(1, hid, hid)?)?;
                let gg = gates.narrow(1, 2 * hid, hid)?.tanh()?;
                let o = sigmoid(&gates.narrow(1, 3 * hid, hid)?)?;
                let c_prev = c
                    .as_ref()
                    .ok_or_else(|| candle_core::Error::Msg("LSTM without a cell state".into()))?;
                let c_next = f.mul(c_prev)?.add(&i.mul(&gg)?)?;
                let mut h_next = o.mul(&c_next.tanh()?)?;
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

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::sigmoid(x)?)
}
