//! The FFT form of a linear filter (the convolution theorem): the padded
//! input and the kernel go to the frequency domain (`realfft` along the
//! rows, `rustfft` down the columns), are multiplied there, and come back.
//!
//! The op is a valid correlation of an already padded plane `xp`
//! (`hp x wp`) with a `kh x kw` kernel, giving `(hp - kh + 1) x
//! (wp - kw + 1)`. On a transform of size `fh x fw` with `fh >= hp` and
//! `fw >= wp`, the circular correlation equals the linear one at every
//! output position (`i + t <= hp - 1 < fh`: nothing wraps), so the transform
//! needs no more zeros than it takes to reach a fast size.
//!
//! It is a candle [`CustomOp1`] with a backward: the gradient of a valid
//! correlation with `k` is the correlation of the gradient, zero-padded by
//! `kh - 1` and `kw - 1` on every side, with `k` flipped, which is this op
//! again.

use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};

use crate::Result;

/// A kernel the op owns: all taps row-major, or the two 1-D factors.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kern {
    Full(Vec<f32>),
    Outer { col: Vec<f32>, row: Vec<f32> },
}

/// The valid correlation of `[B, C, hp, wp]` with one `kh x kw` kernel,
/// every channel, by FFT.
#[derive(Clone, Debug)]
pub(crate) struct FftCorrelate {
    pub kern: Kern,
    pub kh: usize,
    pub kw: usize,
}

/// The smallest even size at least `n` whose only prime factors are 2, 3,
/// 5 and 7 (sizes `rustfft` has fast butterflies for; even, so `realfft`
/// uses its half-length complex transform).
pub fn fast_len(n: usize) -> usize {
    let mut m = n.max(2);
    loop {
        if m % 2 == 0 {
            let mut r = m;
            for p in [2, 3, 5, 7] {
                while r % p == 0 {
                    r /= p;
                }
            }
            if r == 1 {
                return m;
            }
        }
        m += 1;
    }
}

/// The plans for one transform size.
struct Plans {
    row_fwd: Arc<dyn RealToComplex<f32>>,
    row_inv: Arc<dyn ComplexToReal<f32>>,
    col_fwd: Arc<dyn Fft<f32>>,
    col_inv: Arc<dyn Fft<f32>>,
}

type Planners = (RealFftPlanner<f32>, FftPlanner<f32>);

/// Plans for an `fh x fw` transform, from planners kept for the process
/// (they cache every plan they made).
fn plans(fh: usize, fw: usize) -> Plans {
    static PLANNERS: OnceLock<Mutex<Planners>> = OnceLock::new();
    let m = PLANNERS.get_or_init(|| Mutex::new((RealFftPlanner::new(), FftPlanner::new())));
    // A poisoned lock still holds valid planners (they only add to caches).
    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
    let (real, complex) = &mut *g;
    Plans {
        row_fwd: real.plan_fft_forward(fw),
        row_inv: real.plan_fft_inverse(fw),
        col_fwd: complex.plan_fft_forward(fh),
        col_inv: complex.plan_fft_inverse(fh),
    }
}

fn fft_err(e: realfft::FftError) -> candle_core::Error {
    candle_core::Error::Msg(format!("filter2d (fft): {e}"))
}

impl FftCorrelate {
    /// The same op with the kernel flipped in both axes (a correlation
    /// with it is a convolution with the original).
    fn flipped(&self) -> Self {
        let rev = |v: &[f32]| v.iter().rev().copied().collect::<Vec<f32>>();
        let kern = match &self.kern {
            Kern::Full(k) => Kern::Full(rev(k)),
            Kern::Outer { col, row } => Kern::Outer {
                col: rev(col),
                row: rev(row),
            },
        };
        FftCorrelate {
            kern,
            kh: self.kh,
            kw: self.kw,
        }
    }

    /// The kernel's spectrum, conjugated (for a correlation) and scaled by
    /// the inverse transform's `1 / (fh * fw)`, stored column by column:
    /// `[wc, fh]` with `wc = fw / 2 + 1`.
    fn spectrum(&self, p: &Plans, fh: usize, fw: usize) -> candle_core::Result<Vec<Complex32>> {
        let wc = fw / 2 + 1;
        let (kh, kw) = (self.kh, self.kw);
        let scale = 1.0 / (fh * fw) as f32;
        let zero = Complex32::new(0.0, 0.0);
        let mut out = vec![zero; wc * fh];
        let mut rbuf = p.row_fwd.make_input_vec();
        let mut rscratch = p.row_fwd.make_scratch_vec();
        match &self.kern {
            Kern::Outer { col, row } => {
                // The outer product of the two 1-D spectra.
                rbuf.fill(0.0);
                rbuf[..kw].copy_from_slice(row);
                let mut rs = p.row_fwd.make_output_vec();
                p.row_fwd
                    .process_with_scratch(&mut rbuf, &mut rs, &mut rscratch)
                    .map_err(fft_err)?;
                let mut cs = vec![zero; fh];
                for (c, &v) in cs.iter_mut().zip(col) {
                    *c = Complex32::new(v, 0.0);
                }
                p.col_fwd.process(&mut cs);
                for (j, r) in rs.iter().enumerate() {
                    for (o, c) in out[j * fh..(j + 1) * fh].iter_mut().zip(&cs) {
                        *o = (c * r).conj() * scale;
                    }
                }
            }
            Kern::Full(k) => {
                let mut rs = p.row_fwd.make_output_vec();
                for t in 0..kh {
                    rbuf.fill(0.0);
                    rbuf[..kw].copy_from_slice(&k[t * kw..(t + 1) * kw]);
                    p.row_fwd
                        .process_with_scratch(&mut rbuf, &mut rs, &mut rscratch)
                        .map_err(fft_err)?;
                    for (j, v) in rs.iter().enumerate() {
                        out[j * fh + t] = *v;
                    }
                }
                let mut scratch = vec![zero; p.col_fwd.get_inplace_scratch_len()];
                for c in out.chunks_mut(fh) {
                    p.col_fwd.process_with_scratch(c, &mut scratch);
                    c.iter_mut().for_each(|v| *v = v.conj() * scale);
                }
            }
        }
        Ok(out)
    }

    /// One plane: `xp` `hp x wp` into `y` `oh x ow`.
    #[allow(clippy::too_many_arguments)]
    fn plane(
        &self,
        p: &Plans,
        spec: &[Complex32],
        (fh, fw): (usize, usize),
        xp: &[f32],
        (hp, wp): (usize, usize),
        y: &mut [f32],
        (oh, ow): (usize, usize),
        cols: &mut [Complex32],
    ) -> candle_core::Result<()> {
        let wc = fw / 2 + 1;
        let zero = Complex32::new(0.0, 0.0);
        // Rows: the hp real rows to their half spectra, written straight
        // into the column-major buffer `cols` [wc, fh] (rows hp.. stay 0).
        // Blocks of rows per task, each transposing its block.
        const BLOCK: usize = 16;
        let row_fwd = &p.row_fwd;
        let blocks: Vec<candle_core::Result<Vec<Complex32>>> = (0..hp.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let r0 = b * BLOCK;
                let n = BLOCK.min(hp - r0);
                let mut buf = row_fwd.make_input_vec();
                let mut scratch = row_fwd.make_scratch_vec();
                let mut out = vec![zero; n * wc];
                for (r, o) in out.chunks_mut(wc).enumerate() {
                    let i = r0 + r;
                    buf[..wp].copy_from_slice(&xp[i * wp..(i + 1) * wp]);
                    buf[wp..].fill(0.0);
                    row_fwd
                        .process_with_scratch(&mut buf, o, &mut scratch)
                        .map_err(fft_err)?;
                }
                Ok(out)
            })
            .collect();
        cols.fill(zero);
        for (b, block) in blocks.into_iter().enumerate() {
            let block = block?;
            let r0 = b * BLOCK;
            for (r, row) in block.chunks(wc).enumerate() {
                for (j, v) in row.iter().enumerate() {
                    cols[j * fh + r0 + r] = *v;
                }
            }
        }
        // Columns: forward, times the kernel's spectrum, inverse.
        let (col_fwd, col_inv) = (&p.col_fwd, &p.col_inv);
        let scratch_len = col_fwd
            .get_inplace_scratch_len()
            .max(col_inv.get_inplace_scratch_len());
        cols.par_chunks_mut(fh)
            .zip(spec.par_chunks(fh))
            .for_each_init(
                || vec![zero; scratch_len],
                |scratch, (c, k)| {
                    col_fwd.process_with_scratch(c, scratch);
                    c.iter_mut().zip(k).for_each(|(v, k)| *v *= k);
                    col_inv.process_with_scratch(c, scratch);
                },
            );
        // Back along the rows, only the oh rows kept, cropped to ow.
        let row_inv = &p.row_inv;
        let cols = &*cols;
        y.par_chunks_mut(ow).enumerate().try_for_each_init(
            || {
                (
                    row_inv.make_input_vec(),
                    row_inv.make_output_vec(),
                    row_inv.make_scratch_vec(),
                )
            },
            |(spec_row, real, scratch), (i, out)| {
                for (j, v) in spec_row.iter_mut().enumerate() {
                    *v = cols[j * fh + i];
                }
                // A real signal's spectrum has real first (and, for an
                // even length, last) bins; rounding leaves a residue.
                spec_row[0].im = 0.0;
                if fw % 2 == 0 {
                    spec_row[wc - 1].im = 0.0;
                }
                row_inv
                    .process_with_scratch(spec_row, real, scratch)
                    .map_err(fft_err)?;
                out.copy_from_slice(&real[..ow]);
                Ok::<(), candle_core::Error>(())
            },
        )?;
        let _ = oh;
        Ok(())
    }
}

impl CustomOp1 for FftCorrelate {
    fn name(&self) -> &'static str {
        "filter2d-fft"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("filter2d (fft): expected an f32 input");
        };
        let Some((o1, o2)) = layout.contiguous_offsets() else {
            candle_core::bail!("filter2d (fft): the input must be contiguous");
        };
        let data = &data[o1..o2];
        let [b, c, hp, wp] = *layout.shape().dims() else {
            candle_core::bail!(
                "filter2d (fft): expected [B, C, H, W], got {:?}",
                layout.shape()
            );
        };
        let (kh, kw) = (self.kh, self.kw);
        if kh == 0 || kw == 0 || hp < kh || wp < kw {
            candle_core::bail!(
                "filter2d (fft): a {kh} x {kw} kernel leaves no output on a padded {hp} x {wp} input"
            );
        }
        let (oh, ow) = (hp - kh + 1, wp - kw + 1);
        let (fh, fw) = (fast_len(hp), fast_len(wp));
        let p = plans(fh, fw);
        let spec = self.spectrum(&p, fh, fw)?;
        let mut y = vec![0f32; b * c * oh * ow];
        let mut cols = vec![Complex32::new(0.0, 0.0); (fw / 2 + 1) * fh];
        for (xp, yp) in data.chunks(hp * wp).zip(y.chunks_mut(oh * ow)) {
            self.plane(&p, &spec, (fh, fw), xp, (hp, wp), yp, (oh, ow), &mut cols)?;
        }
        Ok((CpuStorage::F32(y), Shape::from((b, c, oh, ow))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad
            .pad_with_zeros(2, self.kh - 1, self.kh - 1)?
            .pad_with_zeros(3, self.kw - 1, self.kw - 1)?
            .contiguous()?;
        Ok(Some(g.apply_op1(self.flipped())?))
    }
}

/// The valid correlation of the padded `xp` `[B, C, hp, wp]` with the
/// kernel, by FFT: computed in f32 on the CPU (a tensor elsewhere or of
/// another dtype is moved and converted, and back). Differentiable.
pub(crate) fn fft_correlate(xp: &Tensor, op: FftCorrelate) -> Result<Tensor> {
    let (dev, dt) = (xp.device().clone(), xp.dtype());
    let x = xp
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .contiguous()?;
    let y = x.apply_op1(op)?;
    Ok(y.to_dtype(dt)?.to_device(&dev)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_lengths() {
        assert_eq!(fast_len(1), 2);
        assert_eq!(fast_len(11), 12);
        assert_eq!(fast_len(97), 98);
        assert_eq!(fast_len(127), 128);
        assert_eq!(fast_len(2108), 2160);
    }
}
