//! Batch norm in training on f32 CPU tensors as one custom op with its own
//! backward pass, split over channels on the thread pool: the statistics in
//! one read of the input (summed in f64), the normalisation in one pass,
//! and the backward in two (the two sums per channel, then the input
//! gradient), where the same computation in candle's tensor operations
//! took 13 ops forward and about 30 backward, its strided reductions
//! single-threaded (a quarter of a ResNet-18 training step).
//!
//! With `x̂ = (x - μ) / σ` over the `M = N · S` values of a channel
//! (`σ = sqrt(var + eps)`, the variance biased) and `y = γ x̂ + β`:
//! `dβ = Σ dy`, `dγ = Σ dy x̂`, `dx = γ / σ · (dy - dβ / M - x̂ dγ / M)`.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::conv::cpu::SyncPtr;
use crate::host::{f32_slice, HostF32};

/// `x` `[N, C, S..]` as `(N, C, S)`.
fn ncs(dims: &[usize]) -> (usize, usize, usize) {
    let n = dims.first().copied().unwrap_or(1);
    let c = dims.get(1).copied().unwrap_or(1);
    (n, c, dims.iter().skip(2).product())
}

/// Per channel: the mean and the biased variance, two passes in f64.
pub(crate) fn channel_stats(x: &[f32], dims: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let (n, c, s) = ncs(dims);
    let m = (n * s).max(1) as f64;
    crate::conv::on_pool(|_| {
        (0..c)
            .into_par_iter()
            .map(|ch| {
                let blocks = (0..n).map(|b| &x[(b * c + ch) * s..][..s]);
                let mut acc = [0f64; LANES];
                for blk in blocks.clone() {
                    centred_sums(blk, 0.0, false, &mut acc);
                }
                let mean = acc.iter().sum::<f64>() / m;
                let mut acc = [0f64; LANES];
                for blk in blocks {
                    centred_sums(blk, mean, true, &mut acc);
                }
                (mean as f32, (acc.iter().sum::<f64>() / m) as f32)
            })
            .unzip()
    })
}

/// Independent f64 partial sums per reduction (a fixed order, and loops
/// the compiler vectorises, where one running f64 sum is a chain of
/// dependent adds).
const LANES: usize = 8;

crate::conv::math::simd! {
    /// `acc[l] += x - mean` (or its square), element `i` into lane `i % 8`.
    fn centred_sums(x: &[f32], mean: f64, square: bool, acc: &mut [f64; LANES]) {
        let f = |v: f32| {
            let d = v as f64 - mean;
            if square { d * d } else { d }
        };
        let (body, tail) = x.split_at(x.len() / LANES * LANES);
        for ch in body.chunks_exact(LANES) {
            for l in 0..LANES {
                acc[l] += f(ch[l]);
            }
        }
        for (l, &v) in tail.iter().enumerate() {
            acc[l] += f(v);
        }
    }
}

crate::conv::math::simd! {
    /// `sb[l] += dy`, `sg[l] += dy (x - mu) is`, element `i` into lane
    /// `i % 8`.
    fn grad_sums(dy: &[f32], x: &[f32], mu: f32, is: f32, sb: &mut [f64; LANES], sg: &mut [f64; LANES]) {
        let cut = dy.len() / LANES * LANES;
        for (dc, vc) in dy[..cut].chunks_exact(LANES).zip(x[..cut].chunks_exact(LANES)) {
            for l in 0..LANES {
                sb[l] += dc[l] as f64;
                sg[l] += (dc[l] * (vc[l] - mu) * is) as f64;
            }
        }
        for (l, (&d, &v)) in dy[cut..].iter().zip(&x[cut..]).enumerate() {
            sb[l] += d as f64;
            sg[l] += (d * (v - mu) * is) as f64;
        }
    }
}

/// A vector of `len` floats whose every element `fill` writes: jobs over
/// channels write disjoint blocks through a [`SyncPtr`], so nothing needs
/// zeroing first.
fn written_by(len: usize, fill: impl FnOnce(SyncPtr)) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    fill(SyncPtr(out.as_mut_ptr()));
    // SAFETY: the caller's `fill` writes all `len` elements (every channel
    // of every image).
    unsafe { out.set_len(len) };
    out
}

/// `y = (x - mean) * invstd * γ + β` per channel, with its backward.
pub(crate) struct BnTrain {
    pub mean: Arc<Vec<f32>>,
    pub invstd: Arc<Vec<f32>>,
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "netdsl-batch-norm-train"
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
        let op = "batch_norm";
        let (x, g, b) = (
            f32_slice(op, s1, l1)?,
            f32_slice(op, s2, l2)?,
            f32_slice(op, s3, l3)?,
        );
        let (n, c, s) = ncs(l1.dims());
        let y = written_by(x.len(), |yp| {
            crate::conv::on_pool(|_| {
                (0..c).into_par_iter().for_each(|ch| {
                    let scale = self.invstd[ch] * g[ch];
                    let shift = b[ch] - self.mean[ch] * scale;
                    for img in 0..n {
                        let at = (img * c + ch) * s;
                        // SAFETY: channel ch's blocks of y belong to this job
                        // alone; each is written whole.
                        let out = unsafe { yp.slice(at, s) };
                        for (o, &v) in out.iter_mut().zip(&x[at..at + s]) {
                            *o = v * scale + shift;
                        }
                    }
                })
            })
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = x.dims().to_vec();
        let (n, c, s) = ncs(&dims);
        let m = (n * s).max(1) as f32;
        // Read in place where they are contiguous f32 CPU data.
        let (xh, dyh) = (HostF32::of(x)?, HostF32::of(dy)?);
        let (xv, dyv) = (xh.slice(), dyh.slice());
        let gv = g.to_vec1::<f32>()?;
        // Per channel: dβ = Σ dy, dγ = Σ dy x̂ (f64 sums).
        let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = crate::conv::on_pool(|_| {
            (0..c)
                .into_par_iter()
                .map(|ch| {
                    let (mu, is) = (self.mean[ch], self.invstd[ch]);
                    let (mut sb, mut sg) = ([0f64; LANES], [0f64; LANES]);
                    for img in 0..n {
                        let at = (img * c + ch) * s;
                        grad_sums(&dyv[at..at + s], &xv[at..at + s], mu, is, &mut sb, &mut sg);
                    }
                    (sb.iter().sum::<f64>() as f32, sg.iter().sum::<f64>() as f32)
                })
                .unzip()
        });
        let dx = written_by(xv.len(), |dp| {
            crate::conv::on_pool(|_| {
                (0..c).into_par_iter().for_each(|ch| {
                    let (mu, is) = (self.mean[ch], self.invstd[ch]);
                    let k = gv[ch] * is;
                    let (mb, mg) = (dbeta[ch] / m, dgamma[ch] / m);
                    for img in 0..n {
                        let at = (img * c + ch) * s;
                        // SAFETY: channel ch's blocks of dx belong to this job
                        // alone; each is written whole.
                        let out = unsafe { dp.slice(at, s) };
                        for ((o, &d), &v) in
                            out.iter_mut().zip(&dyv[at..at + s]).zip(&xv[at..at + s])
                        {
                            *o = k * (d - mb - (v - mu) * is * mg);
                        }
                    }
                })
            })
        });
        drop((xh, dyh));
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, dims, dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}
