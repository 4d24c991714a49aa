//! The recurrent layers' differentiable path on the CPU in `f32`: one
//! custom op per layer and direction runs every step, and its backward
//! runs backpropagation through time in one pass.
//!
//! Built step by step from candle ops, a 100-step LSTM layer is about 800
//! autograd nodes, and the backward of each step's `get(t)` of the input
//! projection writes a zero tensor the size of the whole projection: the
//! training step was 16x PyTorch's. Here the forward projects the whole
//! input with one product on the packed kernel, and keeps, per step and
//! batch row, what the backward needs (so nothing is recomputed); the
//! backward walks the steps in reverse with one `[B, G·H] x [G·H, H]`
//! product per step on the packed kernel, then gives the input's gradient
//! in one product and both weights' in one matrix multiply over all steps.
//! Nothing the size of the gates passes through candle's autograd, whose
//! every edge allocates a zero tensor and adds to it.
//!
//! The op's inputs are the sequence `x` `[T, B, F]`, the weights `[W_ih |
//! W_hh]` `[G·H, F + H]`, and one flat vector of the initial states, the
//! summed bias `[G·H]` (`b_ih` plus `b_hh`, but GRU's candidate part) and
//! GRU's `b_hn`. Its output is the hidden state after every step `[T, B,
//! H]` (carried unchanged past a sequence's end, so that the final state is
//! the last processed step's) and, for an LSTM, one more row: the final
//! cell state. What the backward reads besides (LSTM: `c, i, f, g, o` per
//! step and row; GRU: `r, z, n` and `W_hn h + b_hn`) stays inside the op,
//! which the autograd graph keeps until the backward has run.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use crate::rnn::fast::{
    gru_row, lstm_row, matmul, on_threads, rnn_row, split_threads, split_units, tanh_all, Cols,
    Keep, StepBarrier, StepLoop,
};
use crate::rnn::Cell;
use crate::rnn_kernel::recurrent_serial;
use crate::rnn_kernel::{recurrent, Packed};

/// One layer-direction over a whole sequence, with its backward.
pub(crate) struct SeqOp {
    pub cell: Cell,
    pub hid: usize,
    pub reverse: bool,
    /// Each batch row's length (packed-sequence semantics); all `T` when
    /// absent.
    pub lens: Option<Vec<usize>>,
    /// Written by the forward for the backward: per step and row, `width`
    /// floats.
    pub saved: Mutex<Vec<f32>>,
}

/// The sizes of one call: steps, batch, input features.
#[derive(Clone, Copy)]
struct Dims {
    t: usize,
    b: usize,
    f: usize,
}

/// The flat vector of initial states and biases, split.
struct Extra<'a> {
    h0: &'a [f32],
    c0: &'a [f32],
    bias: &'a [f32],
    b_hn: &'a [f32],
}

impl SeqOp {
    /// Floats per step and row kept for the backward.
    fn width(&self) -> usize {
        self.hid
            * match self.cell {
                Cell::RnnTanh | Cell::RnnRelu => 0,
                Cell::Lstm => 5,
                Cell::Gru => 4,
            }
    }

    fn gh(&self) -> usize {
        self.cell.gates() * self.hid
    }

    /// The flat vector's parts: `h0` `[B·H]`, `c0` `[B·H]` (LSTM), the
    /// summed bias `[G·H]`, `b_hn` `[H]` (GRU).
    fn extra_parts(&self, b: usize) -> [usize; 4] {
        let bh = b * self.hid;
        [
            bh,
            if self.cell == Cell::Lstm { bh } else { 0 },
            self.gh(),
            if self.cell == Cell::Gru { self.hid } else { 0 },
        ]
    }

    fn split<'a>(&self, b: usize, v: &'a [f32]) -> Extra<'a> {
        let [a, c, g, _] = self.extra_parts(b);
        let (h0, rest) = v.split_at(a);
        let (c0, rest) = rest.split_at(c);
        let (bias, b_hn) = rest.split_at(g);
        Extra { h0, c0, bias, b_hn }
    }

    /// The time index of processing step `s`.
    fn time(&self, s: usize, t_len: usize) -> usize {
        if self.reverse {
            t_len - 1 - s
        } else {
            s
        }
    }

    fn live(&self, b: usize, t: usize) -> bool {
        self.lens
            .as_ref()
            .is_none_or(|l| l.get(b).is_some_and(|&n| t < n))
    }

    fn check(&self, x: &[usize], w: usize, extra: usize) -> candle_core::Result<Dims> {
        let &[t, b, f] = x else {
            candle_core::bail!("recurrent sequence op: the input must be [T, B, F], not {x:?}");
        };
        if t == 0
            || b == 0
            || self.hid == 0
            || w != self.gh() * (f + self.hid)
            || extra != self.extra_parts(b).iter().sum::<usize>()
            || self.lens.as_ref().is_some_and(|l| l.len() != b)
        {
            candle_core::bail!(
                "recurrent sequence op: weights of {w} and states of {extra} floats do not fit \
                 an input {x:?} and a {:?} cell with hidden size {}",
                self.cell,
                self.hid
            );
        }
        Ok(Dims { t, b, f })
    }
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    crate::host::f32_slice("recurrent sequence op", s, l)
}

fn floats(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// `[W_ih | W_hh]` `[G·H, F + H]` split into its two row-major parts.
fn split_weights(w: &[f32], f: usize, hid: usize) -> (Vec<f32>, Vec<f32>) {
    let mut w_ih = Vec::with_capacity(w.len() / (f + hid).max(1) * f);
    let mut w_hh = Vec::with_capacity(w.len() / (f + hid).max(1) * hid);
    for row in w.chunks_exact(f + hid) {
        w_ih.extend_from_slice(&row[..f]);
        w_hh.extend_from_slice(&row[f..]);
    }
    (w_ih, w_hh)
}

/// `w` `[rows, cols]` row-major, transposed.
fn transposed(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for (r, row) in w.chunks_exact(cols).enumerate().take(rows) {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

/// What backpropagation through time reads.
struct Through<'a> {
    t_len: usize,
    batch: usize,
    e: &'a Extra<'a>,
    out: &'a [f32],
    saved: &'a [f32],
    dy: &'a [f32],
    /// The hidden state each step started from, `[T, B, H]` in time order.
    h_prev: &'a [f32],
    /// `W_hh^T` `[H, G·H]`.
    wt_hh: &'a [f32],
}

/// What it writes: the gates' gradients `dxp` `[T·B, G·H]` (and a GRU's
/// recurrent part `dhh`), `db_hn` `[H]`, and the running `dh`, `dc` `[B,
/// H]`. Each thread of `split_through_time` writes only its own units'
/// columns.
#[derive(Clone, Copy)]
struct Bufs {
    dxp: Cols,
    dhh: Cols,
    db_hn: Cols,
    dh: Cols,
    dc: Cols,
}

impl SeqOp {
    /// Step `s`'s gate gradients for hidden units `units` of every row:
    /// `dh` gains `dy`, the gates' gradients are written and `dh`, `dc`
    /// passed on through the cell (not yet through `W_hh`).
    ///
    /// # Safety
    /// No other thread reads or writes `units`' columns of `bufs` meanwhile;
    /// `tc` holds at least `units.len()` floats.
    unsafe fn step_grads(
        &self,
        l: &Through,
        bufs: Bufs,
        s: usize,
        units: std::ops::Range<usize>,
        tc: &mut [f32],
    ) {
        let (hid, wd, gh) = (self.hid, self.width(), self.gh());
        let (t_len, batch) = (l.t_len, l.batch);
        let t = self.time(s, t_len);
        let (j0, n) = (units.start, units.len());
        for b in 0..batch {
            // SAFETY (for the whole body): columns j0..j0 + n of each row,
            // which are this call's alone (the caller's promise).
            let dhr = unsafe { bufs.dh.slice(b * hid + j0, n) };
            let at = (t * batch + b) * hid;
            for (d, g) in dhr.iter_mut().zip(&l.dy[at + j0..at + j0 + n]) {
                *d += g;
            }
            if !self.live(b, t) {
                // The state passed through unchanged: so does its gradient.
                continue;
            }
            let row = &l.saved[(t * batch + b) * wd..(t * batch + b + 1) * wd];
            let hr = &l.out[at + j0..at + j0 + n];
            let r0 = (t * batch + b) * gh;
            let dg = |gi: usize| unsafe { bufs.dxp.slice(r0 + gi * hid + j0, n) };
            match self.cell {
                Cell::RnnTanh => {
                    let dg0 = dg(0);
                    for k in 0..n {
                        dg0[k] = dhr[k] * (1.0 - hr[k] * hr[k]);
                        dhr[k] = 0.0;
                    }
                }
                Cell::RnnRelu => {
                    let dg0 = dg(0);
                    for k in 0..n {
                        dg0[k] = if hr[k] > 0.0 { dhr[k] } else { 0.0 };
                        dhr[k] = 0.0;
                    }
                }
                Cell::Lstm => {
                    // The cell state the step started from.
                    let cp = if s == 0 {
                        &l.e.c0[b * hid + j0..b * hid + j0 + n]
                    } else {
                        let p = (self.time(s - 1, t_len) * batch + b) * wd;
                        &l.saved[p + j0..p + j0 + n]
                    };
                    let dcr = unsafe { bufs.dc.slice(b * hid + j0, n) };
                    let gate = |gi: usize| &row[hid + gi * hid + j0..hid + gi * hid + j0 + n];
                    let (gi_, gf, gg, go) = (gate(0), gate(1), gate(2), gate(3));
                    let tc = &mut tc[..n];
                    tc.copy_from_slice(&row[j0..j0 + n]);
                    tanh_all(tc);
                    let (d0, d1, d2, d3) = (dg(0), dg(1), dg(2), dg(3));
                    for k in 0..n {
                        let (i, fg, g, o) = (gi_[k], gf[k], gg[k], go[k]);
                        let dct = dcr[k] + dhr[k] * o * (1.0 - tc[k] * tc[k]);
                        d0[k] = dct * g * i * (1.0 - i);
                        d1[k] = dct * cp[k] * fg * (1.0 - fg);
                        d2[k] = dct * i * (1.0 - g * g);
                        d3[k] = dhr[k] * tc[k] * o * (1.0 - o);
                        dcr[k] = dct * fg;
                        dhr[k] = 0.0;
                    }
                }
                Cell::Gru => {
                    let hp = &l.h_prev[at + j0..at + j0 + n];
                    let part = |gi: usize| &row[gi * hid + j0..gi * hid + j0 + n];
                    let (r, z, nn, hn) = (part(0), part(1), part(2), part(3));
                    let dr = |gi: usize| unsafe { bufs.dhh.slice(r0 + gi * hid + j0, n) };
                    let (d0, d1, d2) = (dg(0), dg(1), dg(2));
                    let (r0_, r1_, r2_) = (dr(0), dr(1), dr(2));
                    let db = unsafe { bufs.db_hn.slice(j0, n) };
                    for k in 0..n {
                        let d = dhr[k];
                        let dnp = d * (1.0 - z[k]) * (1.0 - nn[k] * nn[k]);
                        let drp = dnp * hn[k] * r[k] * (1.0 - r[k]);
                        let dzp = d * (hp[k] - nn[k]) * z[k] * (1.0 - z[k]);
                        d0[k] = drp;
                        d1[k] = dzp;
                        d2[k] = dnp;
                        r0_[k] = drp;
                        r1_[k] = dzp;
                        r2_[k] = dnp * r[k];
                        db[k] += dnp * r[k];
                        dhr[k] = d * z[k];
                    }
                }
            }
        }
    }

    /// Backpropagation through time with the hidden units split between
    /// `threads` threads for the whole sequence, as the forward's step
    /// loop: each computes its units' gate gradients, meets the others at a
    /// barrier, then takes its units' part of `dh_prev = dg · W_hh` (the
    /// rows of `W_hh^T` of its units, packed once).
    fn split_through_time(&self, l: &Through, bufs: Bufs, threads: usize) {
        let (hid, gh) = (self.hid, self.gh());
        let batch = l.batch;
        let gru = self.cell == Cell::Gru;
        let barrier = StepBarrier::new(threads);
        let worker = |i: usize| {
            let (u0, u1) = (hid * i / threads, hid * (i + 1) / threads);
            let n = u1 - u0;
            let w = Packed::new(&l.wt_hh[u0 * gh..u1 * gh], n, gh);
            let mut tc = vec![0f32; n];
            let mut prod = vec![0f32; batch * n];
            for s in (0..l.t_len).rev() {
                let t = self.time(s, l.t_len);
                // SAFETY: units u0..u1 are this thread's alone.
                unsafe { self.step_grads(l, bufs, s, u0..u1, &mut tc) };
                barrier.wait();
                // SAFETY: step s's rows of the gate gradients are complete
                // (the barrier) and nobody writes them again.
                let rows = unsafe {
                    (if gru { bufs.dhh } else { bufs.dxp }).read(t * batch * gh, batch * gh)
                };
                recurrent_serial(&mut prod, false, rows, batch, &w);
                for b in 0..batch {
                    // SAFETY: this thread's columns of `dh`.
                    let d = unsafe { bufs.dh.slice(b * hid + u0, n) };
                    for (d, p) in d.iter_mut().zip(&prod[b * n..(b + 1) * n]) {
                        *d += p;
                    }
                }
            }
        };
        on_threads(threads, worker);
    }
}

impl CustomOp3 for SeqOp {
    fn name(&self) -> &'static str {
        "netdsl-recurrent-sequence"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w_cat, extra) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let Dims {
            t: t_len,
            b: batch,
            f,
        } = self.check(l1.dims(), w_cat.len(), extra.len())?;
        let (hid, wd, gh) = (self.hid, self.width(), self.gh());
        let lstm = self.cell == Cell::Lstm;
        let e = self.split(batch, extra);
        let (w_ih, w_hh) = split_weights(w_cat, f, hid);
        // The input projection of every step, the bias first: [T·B, G·H].
        let rows = t_len * batch;
        let mut xp = Vec::with_capacity(rows * gh);
        let written = crate::rnn_kernel::product_into(
            &mut xp.spare_capacity_mut()[..rows * gh],
            Some(e.bias),
            x,
            rows,
            &Packed::new(&w_ih, gh, f),
            crate::conv::Epilogue::None,
        );
        if !written {
            return Err(candle_core::Error::Msg(format!(
                "rnn: {rows} input rows do not fit the input weight ({gh} x {f})"
            )));
        }
        // SAFETY: `product_into` wrote all `rows * gh` values.
        unsafe { xp.set_len(rows * gh) };
        // Big enough to split: the hidden units between the threads for the
        // whole sequence, as in inference (at least 32 units each).
        let threads = split_threads(batch, gh, hid);
        if threads >= 2 {
            let mut c = e.c0.to_vec();
            let mut saved = vec![0f32; t_len * batch * wd];
            let steps = StepLoop {
                xp: &xp,
                w_hh: &w_hh,
                b_hn: e.b_hn,
                lens: self.lens.as_deref(),
                cell: self.cell,
                reverse: self.reverse,
                t_len,
                batch,
                hid,
                carry: true,
            };
            let (seq, _) = split_units(
                &steps,
                e.h0.to_vec(),
                &mut c,
                Some(Keep(&mut saved)),
                threads,
            );
            let mut out = seq;
            if lstm {
                out.extend_from_slice(&c);
            }
            *self
                .saved
                .lock()
                .map_err(|_| candle_core::Error::Msg("recurrent sequence op: poisoned".into()))? =
                saved;
            let rows = t_len + usize::from(lstm);
            return Ok((CpuStorage::F32(out), Shape::from((rows, batch, hid))));
        }
        let w = Packed::new(&w_hh, gh, hid);
        let mut h = e.h0.to_vec();
        let mut c = e.c0.to_vec();
        // The hidden state after each step, then (LSTM) the final cell state.
        let mut out = vec![0f32; (t_len + usize::from(lstm)) * batch * hid];
        let mut saved = vec![0f32; t_len * batch * wd];
        let mut hh = vec![
            0f32;
            if self.cell == Cell::Gru {
                batch * gh
            } else {
                0
            }
        ];
        for s in 0..t_len {
            let t = self.time(s, t_len);
            let gates = &mut xp[t * batch * gh..(t + 1) * batch * gh];
            match self.cell {
                Cell::Gru => recurrent(&mut hh, false, &h, batch, &w),
                _ => recurrent(gates, true, &h, batch, &w),
            }
            let keep = &mut saved[t * batch * wd..(t + 1) * batch * wd];
            for b in 0..batch {
                let hr = &mut h[b * hid..(b + 1) * hid];
                let row = &mut keep[b * wd..(b + 1) * wd];
                if !self.live(b, t) {
                    // The state is carried (and LSTM's cell state kept for
                    // the next step's backward); the backward passes the
                    // gradient through.
                    if lstm {
                        row[..hid].copy_from_slice(&c[b * hid..(b + 1) * hid]);
                    }
                    continue;
                }
                let gr = &mut gates[b * gh..(b + 1) * gh];
                match self.cell {
                    Cell::RnnTanh | Cell::RnnRelu => rnn_row(self.cell, gr, hr),
                    // The inference loop's cells (gates activated in
                    // place), then what the backward reads.
                    Cell::Lstm => {
                        let cr = &mut c[b * hid..(b + 1) * hid];
                        lstm_row(gr, cr, hr, hid);
                        row[..hid].copy_from_slice(cr);
                        row[hid..].copy_from_slice(gr);
                    }
                    Cell::Gru => {
                        let hhr = &hh[b * gh..(b + 1) * gh];
                        gru_row(gr, hhr, e.b_hn, hr, hid);
                        row[..3 * hid].copy_from_slice(gr);
                        for ((o, &x), &bn) in
                            row[3 * hid..].iter_mut().zip(&hhr[2 * hid..]).zip(e.b_hn)
                        {
                            *o = x + bn;
                        }
                    }
                }
            }
            out[t * batch * hid..(t + 1) * batch * hid].copy_from_slice(&h);
        }
        if lstm {
            out[t_len * batch * hid..].copy_from_slice(&c);
        }
        *self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("recurrent sequence op: poisoned".into()))? =
            saved;
        let rows = t_len + usize::from(lstm);
        Ok((CpuStorage::F32(out), Shape::from((rows, batch, hid))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w_cat: &Tensor,
        extra: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (xv, w, e) = (floats(x)?, floats(w_cat)?, floats(extra)?);
        let dims = self.check(x.dims(), w.len(), e.len())?;
        let (hid, wd) = (self.hid, self.width());
        let lstm = self.cell == Cell::Lstm;
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("recurrent sequence op: poisoned".into()))?;
        let (res, grad) = (res.contiguous()?, grad.contiguous()?);
        let run = |out: &[f32], dy: &[f32]| {
            let rows = (dims.t + usize::from(lstm)) * dims.b * hid;
            if out.len() != rows || dy.len() != rows || saved.len() != dims.t * dims.b * wd {
                candle_core::bail!(
                    "recurrent sequence op: the backward's output or gradient is misshaped"
                );
            }
            Ok(self.backward(dims, &xv, &w, &e, out, &saved, dy))
        };
        let (dx, dw, dextra) =
            crate::host::with_f32(&res, |out| crate::host::with_f32(&grad, |dy| run(out, dy)))
                .flatten()
                .ok_or_else(|| {
                    candle_core::Error::Msg("recurrent sequence op: not f32 CPU".into())
                })??;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, w_cat.shape(), dev)?),
            Some(Tensor::from_vec(dextra, extra.shape(), dev)?),
        ))
    }
}

type Grads = (Vec<f32>, Vec<f32>, Vec<f32>);

impl SeqOp {
    /// Backpropagation through time: `out` is the forward's output (the
    /// state after each step, then LSTM's final cell state), `saved` what
    /// it kept, `dy` the gradient of `out`. Gives the gradients of `x`,
    /// `[W_ih | W_hh]` and the flat initial states and biases.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        Dims {
            t: t_len,
            b: batch,
            f,
        }: Dims,
        x: &[f32],
        w_cat: &[f32],
        extra: &[f32],
        out: &[f32],
        saved: &[f32],
        dy: &[f32],
    ) -> Grads {
        let (hid, gh) = (self.hid, self.gh());
        let lstm = self.cell == Cell::Lstm;
        let gru = self.cell == Cell::Gru;
        let e = self.split(batch, extra);
        let (w_ih, w_hh) = split_weights(w_cat, f, hid);
        // W_hh^T [H, G·H], for dh[b, j] += Σ_g dg[b, g] W_hh[g, j] (packed
        // whole by the one-thread loop, by rows of its units by each
        // thread of the split one).
        let wt_hh = transposed(&w_hh, gh, hid);
        let bh = batch * hid;
        // The hidden state each step started from, [T, B, H] in time order.
        let mut h_prev = vec![0f32; t_len * bh];
        for s in 0..t_len {
            let t = self.time(s, t_len);
            let src = if s == 0 {
                e.h0
            } else {
                let p = self.time(s - 1, t_len);
                &out[p * bh..(p + 1) * bh]
            };
            h_prev[t * bh..(t + 1) * bh].copy_from_slice(src);
        }
        let mut dxp = vec![0f32; t_len * batch * gh];
        // The gradient of the recurrent product's output, where it differs
        // from `dxp` (GRU's candidate part is multiplied by `r`).
        let mut dhh = vec![0f32; if gru { t_len * batch * gh } else { 0 }];
        let mut db_hn = vec![0f32; if gru { hid } else { 0 }];
        let mut dh = vec![0f32; bh];
        // The cell state's gradient starts from c_n's.
        let mut dc = if lstm {
            dy[t_len * bh..].to_vec()
        } else {
            Vec::new()
        };
        let threads = split_threads(batch, gh, hid);
        let steps = Through {
            t_len,
            batch,
            e: &e,
            out,
            saved,
            dy,
            h_prev: &h_prev,
            wt_hh: &wt_hh,
        };
        // Made afresh wherever the buffers were borrowed in between.
        macro_rules! bufs {
            () => {
                Bufs {
                    dxp: Cols::of(&mut dxp),
                    dhh: Cols::of(&mut dhh),
                    db_hn: Cols::of(&mut db_hn),
                    dh: Cols::of(&mut dh),
                    dc: Cols::of(&mut dc),
                }
            };
        }
        if threads >= 2 {
            self.split_through_time(&steps, bufs!(), threads);
        } else {
            let wt_hh = Packed::new(&wt_hh, hid, gh);
            let mut tc = vec![0f32; hid];
            for s in (0..t_len).rev() {
                let t = self.time(s, t_len);
                // SAFETY: one thread, every unit.
                unsafe { self.step_grads(&steps, bufs!(), s, 0..hid, &mut tc) };
                // dh_prev (+)= dg · W_hh for the whole batch (rows past
                // their end have a zero dg: their dh passes through).
                let g_rows = if gru { &dhh } else { &dxp };
                recurrent(
                    &mut dh,
                    true,
                    &g_rows[t * batch * gh..(t + 1) * batch * gh],
                    batch,
                    &wt_hh,
                );
            }
        }
        let rows = t_len * batch;
        // dx = dxp · W_ih: [T·B, G·H] x [G·H, F].
        let mut dx = vec![0f32; rows * f];
        let wt_ih = Packed::new(&transposed(&w_ih, gh, f), f, gh);
        recurrent(&mut dx, false, &dxp, rows, &wt_ih);
        // [dW_ih | dW_hh] = [dxp^T x | dhh^T h_prev]: [G·H, T·B] x [T·B, F]
        // and [G·H, T·B] x [T·B, H], written side by side.
        let width = f + hid;
        let mut dw = vec![0f32; gh * width];
        matmul(
            &mut dw,
            (width, 1),
            false,
            &dxp,
            (1, gh),
            x,
            (f, 1),
            (gh, f, rows),
        );
        matmul(
            &mut dw[f..],
            (width, 1),
            false,
            if gru { &dhh } else { &dxp },
            (1, gh),
            &h_prev,
            (hid, 1),
            (gh, hid, rows),
        );
        // The bias: the sum of dxp over all rows.
        let mut dbias = vec![0f32; gh];
        for row in dxp.chunks_exact(gh) {
            for (d, g) in dbias.iter_mut().zip(row) {
                *d += g;
            }
        }
        let mut dextra = dh;
        dextra.extend_from_slice(&dc);
        dextra.extend_from_slice(&dbias);
        dextra.extend_from_slice(&db_hn);
        (dx, dw, dextra)
    }
}
