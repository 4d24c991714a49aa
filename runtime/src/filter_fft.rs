//! The FFT form of a linear filter (the convolution theorem): the padded
//! input and the kernel go to the frequency domain (`realfft` along the
//! rows, `rustfft` down the columns), are multiplied there, and come back.
//!
//! The op is a valid correlation of the input extended by the border rule
//! (`hp x wp`, read through the border's index map, not copied) with a
//! `kh x kw` kernel, giving `(hp - kh + 1) x (wp - kw + 1)`. On a transform
//! of size `fh x fw` with `fh >= hp` and `fw >= wp`, the circular
//! correlation equals the linear one at every output position
//! (`i + t <= hp - 1 < fh`: nothing wraps), so the transform needs no more
//! zeros than it takes to reach a fast size. Only the `h` input rows are
//! transformed along W: an extended row is one of them.
//!
//! It is a candle [`CustomOp1`] with a backward: the gradient of a valid
//! correlation with `k` is the correlation of the gradient, zero-padded by
//! `kh - 1` and `kw - 1` on every side, with `k` flipped (this op again),
//! then each extended position added into the input position it reads.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};

use crate::filter::{border_maps, fold_border, Border};
use crate::Result;

/// A kernel the op owns: all taps row-major, or the two 1-D factors.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kern {
    Full(Vec<f32>),
    Outer { col: Vec<f32>, row: Vec<f32> },
}

/// The correlation of every channel of `[B, C, h, w]`, extended by `pad`
/// with the `border` rule, with one `kh x kw` kernel, by FFT: `[B, C, oh,
/// ow]` with `oh = h + top + bottom - kh + 1` (the same along W). The
/// extension is read through the border's index map, never copied.
#[derive(Clone, Debug)]
pub(crate) struct FftCorrelate {
    pub kern: Kern,
    pub kh: usize,
    pub kw: usize,
    pub pad: ((usize, usize), (usize, usize)),
    pub border: Border,
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

/// What identifies a kernel's spectrum: the taps' bits, the kernel's and
/// the transform's sizes.
type SpectrumKey = (Vec<u32>, bool, usize, usize, usize, usize);

/// A kernel's spectrum and what identifies it.
type CachedSpectrum = (SpectrumKey, Arc<Vec<Complex32>>);

/// The last few kernel spectra computed (a network's filters keep their
/// kernels, so each is computed once per size).
fn spectrum_cache() -> &'static Mutex<Vec<CachedSpectrum>> {
    static CACHE: OnceLock<Mutex<Vec<CachedSpectrum>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Vec::new()))
}

const SPECTRUM_CACHE_LEN: usize = 16;

/// Columns per task of the column pass: 8 complex values are one 64-byte
/// cache line of each row the task reads and writes.
const BLOCK: usize = 8;

impl FftCorrelate {
    /// The same op with the kernel flipped in both axes (a correlation
    /// with it is a convolution with the original), on a `pad`ded zero
    /// extension: the adjoint of this op before the border is folded.
    fn adjoint(&self) -> Self {
        let rev = |v: &[f32]| v.iter().rev().copied().collect::<Vec<f32>>();
        let kern = match &self.kern {
            Kern::Full(k) => Kern::Full(rev(k)),
            Kern::Outer { col, row } => Kern::Outer {
                col: rev(col),
                row: rev(row),
            },
        };
        let (kh, kw) = (self.kh, self.kw);
        FftCorrelate {
            kern,
            kh,
            kw,
            pad: ((kh - 1, kh - 1), (kw - 1, kw - 1)),
            border: Border::Zeros,
        }
    }

    fn key(&self, fh: usize, fw: usize) -> SpectrumKey {
        let (bits, outer) = match &self.kern {
            Kern::Full(k) => (k.iter().map(|v| v.to_bits()).collect(), false),
            Kern::Outer { col, row } => {
                (col.iter().chain(row).map(|v| v.to_bits()).collect(), true)
            }
        };
        (bits, outer, self.kh, self.kw, fh, fw)
    }

    /// The kernel's spectrum (cached), see [`Self::compute_spectrum`].
    fn spectrum(
        &self,
        p: &Plans,
        fh: usize,
        fw: usize,
    ) -> candle_core::Result<Arc<Vec<Complex32>>> {
        let key = self.key(fh, fw);
        {
            let cache = spectrum_cache().lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, s)) = cache.iter().find(|(k, _)| *k == key) {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(self.compute_spectrum(p, fh, fw)?);
        let mut cache = spectrum_cache().lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= SPECTRUM_CACHE_LEN {
            cache.remove(0);
        }
        cache.push((key, s.clone()));
        Ok(s)
    }

    /// The kernel's spectrum, conjugated (for a correlation) and scaled by
    /// the inverse transform's `1 / (fh * fw)`, stored column by column:
    /// `[wc, fh]` with `wc = fw / 2 + 1`.
    fn compute_spectrum(
        &self,
        p: &Plans,
        fh: usize,
        fw: usize,
    ) -> candle_core::Result<Vec<Complex32>> {
        let wc = fw / 2 + 1;
        let (kh, kw) = (self.kh, self.kw);
        let scale = 1.0 / (fh * fw) as f32;
        let zero = Complex32::new(0.0, 0.0);
        let mut out = vec![zero; wc * fh];
        let mut rbuf = p.row_fwd.make_input_vec();
        let mut rscratch = p.row_fwd.make_scratch_vec();
        let mut rs = p.row_fwd.make_output_vec();
        match &self.kern {
            Kern::Outer { col, row } => {
                // The outer product of the two 1-D spectra.
                rbuf.fill(0.0);
                rbuf[..kw].copy_from_slice(row);
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
                p.col_fwd.process_with_scratch(&mut out, &mut scratch);
                out.iter_mut().for_each(|v| *v = v.conj() * scale);
            }
        }
        Ok(out)
    }

    /// One plane: `x` `h x w` (rows `w` long) into `y` `oh x ow`, through
    /// the buffers `rowspec` (`[h, wc]`) and `blocks` (`[nb, oh, BLOCK]`).
    #[allow(clippy::too_many_arguments)]
    fn plane(
        &self,
        p: &Plans,
        spec: &[Complex32],
        (fh, fw): (usize, usize),
        x: &[f32],
        w: usize,
        (src_rows, src_cols): (&[Option<usize>], &[Option<usize>]),
        y: &mut [f32],
        (oh, ow): (usize, usize),
        rowspec: &mut [Complex32],
        blocks: &mut [Complex32],
    ) -> candle_core::Result<()> {
        let wc = fw / 2 + 1;
        let zero = Complex32::new(0.0, 0.0);
        // Rows: each input row, extended along W by the border, to its half
        // spectrum. An extended row of the padded plane is one of these (or
        // zeros), so only `h` row transforms are needed.
        let row_fwd = &p.row_fwd;
        rowspec.par_chunks_mut(wc).enumerate().try_for_each_init(
            || (row_fwd.make_input_vec(), row_fwd.make_scratch_vec()),
            |(buf, scratch), (r, out)| {
                let src = &x[r * w..(r + 1) * w];
                for (b, c) in buf.iter_mut().zip(src_cols) {
                    *b = c.map_or(0.0, |c| src[c]);
                }
                buf[src_cols.len()..].fill(0.0);
                row_fwd
                    .process_with_scratch(buf, out, scratch)
                    .map_err(fft_err)
            },
        )?;
        // Columns, BLOCK at a time: gathered down the extended rows,
        // forward, times the kernel's spectrum, inverse, and the `oh` rows
        // kept, written block-major so each output row reads whole lines.
        let (col_fwd, col_inv) = (&p.col_fwd, &p.col_inv);
        let scratch_len = col_fwd
            .get_inplace_scratch_len()
            .max(col_inv.get_inplace_scratch_len());
        let rowspec = &*rowspec;
        blocks.par_chunks_mut(oh * BLOCK).enumerate().for_each_init(
            || (vec![zero; BLOCK * fh], vec![zero; scratch_len]),
            |(lb, scratch), (b, out)| {
                let j0 = b * BLOCK;
                let bw = BLOCK.min(wc - j0);
                let lb = &mut lb[..bw * fh];
                for (i, src) in src_rows.iter().enumerate() {
                    match src {
                        Some(r) => {
                            let row = &rowspec[r * wc + j0..r * wc + j0 + bw];
                            for (jj, v) in row.iter().enumerate() {
                                lb[jj * fh + i] = *v;
                            }
                        }
                        None => (0..bw).for_each(|jj| lb[jj * fh + i] = zero),
                    }
                }
                for jj in 0..bw {
                    lb[jj * fh + src_rows.len()..(jj + 1) * fh].fill(zero);
                }
                col_fwd.process_with_scratch(lb, scratch);
                lb.iter_mut()
                    .zip(&spec[j0 * fh..(j0 + bw) * fh])
                    .for_each(|(v, k)| *v *= k);
                col_inv.process_with_scratch(lb, scratch);
                for i in 0..oh {
                    for jj in 0..bw {
                        out[i * BLOCK + jj] = lb[jj * fh + i];
                    }
                }
            },
        );
        // Back along the rows, cropped to ow.
        let row_inv = &p.row_inv;
        let blocks = &*blocks;
        y.par_chunks_mut(ow).enumerate().try_for_each_init(
            || {
                (
                    row_inv.make_input_vec(),
                    row_inv.make_output_vec(),
                    row_inv.make_scratch_vec(),
                )
            },
            |(spec_row, real, scratch), (i, out)| {
                for (b, chunk) in spec_row.chunks_mut(BLOCK).enumerate() {
                    let src = &blocks[(b * oh + i) * BLOCK..];
                    chunk.copy_from_slice(&src[..chunk.len()]);
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
        )
    }

    /// The extended plane's index maps (see [`border_maps`]).
    fn maps(&self, h: usize, w: usize) -> (Vec<Option<usize>>, Vec<Option<usize>>) {
        border_maps((h, w), self.pad, self.border)
    }
}

thread_local! {
    /// The calling thread's work buffers, kept between calls (large fresh
    /// allocations cost a page fault per page).
    static BUFFERS: RefCell<(Vec<Complex32>, Vec<Complex32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
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
        let (data, [b, c, h, w]) = crate::filter::f32_nchw("filter2d (fft)", storage, layout)?;
        let (kh, kw) = (self.kh, self.kw);
        let ((pt, pb), (pl, pr)) = self.pad;
        let (hp, wp) = (h + pt + pb, w + pl + pr);
        if kh == 0 || kw == 0 || h == 0 || w == 0 || hp < kh || wp < kw {
            candle_core::bail!(
                "filter2d (fft): a {kh} x {kw} kernel leaves no output on a {h} x {w} input padded by {:?}",
                self.pad
            );
        }
        let (oh, ow) = (hp - kh + 1, wp - kw + 1);
        let (fh, fw) = (netdsl_summary::fft_len(hp), netdsl_summary::fft_len(wp));
        let wc = fw / 2 + 1;
        let p = plans(fh, fw);
        let spec = self.spectrum(&p, fh, fw)?;
        let (rows, cols) = self.maps(h, w);
        let mut y = vec![0f32; b * c * oh * ow];
        let nb = wc.div_ceil(BLOCK);
        let zero = Complex32::new(0.0, 0.0);
        let mut run = |rowspec: &mut Vec<Complex32>, blocks: &mut Vec<Complex32>| {
            rowspec.resize(h * wc, zero);
            blocks.resize(nb * oh * BLOCK, zero);
            for (x, yp) in data.chunks(h * w).zip(y.chunks_mut(oh * ow)) {
                self.plane(
                    &p,
                    &spec,
                    (fh, fw),
                    x,
                    w,
                    (&rows, &cols),
                    yp,
                    (oh, ow),
                    &mut rowspec[..h * wc],
                    &mut blocks[..nb * oh * BLOCK],
                )?;
            }
            Ok::<(), candle_core::Error>(())
        };
        // A nested call on this thread (rayon may run one while it waits)
        // finds the buffers borrowed and allocates its own.
        BUFFERS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut bufs) => {
                let (a, z) = &mut *bufs;
                run(a, z)
            }
            Err(_) => run(&mut Vec::new(), &mut Vec::new()),
        })?;
        Ok((CpuStorage::F32(y), Shape::from((b, c, oh, ow))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // d/dx of the correlation of the extension E(x): Eᵀ of the full
        // convolution of the gradient with the kernel (the adjoint op),
        // then Eᵀ adds each extended position into the input position it
        // reads.
        let (b, c, h, w) = arg.dims4()?;
        let g = grad.to_dtype(DType::F32)?.contiguous()?;
        let gp = g.apply_op1(self.adjoint())?;
        let gp: Vec<f32> = gp.flatten_all()?.to_vec1()?;
        let (rows, cols) = self.maps(h, w);
        let gx = fold_border(&gp, (h, w), &rows, &cols);
        let gx = Tensor::from_vec(gx, (b, c, h, w), arg.device())?;
        Ok(Some(gx.to_dtype(arg.dtype())?))
    }
}

/// The correlation of `x` `[B, C, H, W]`, extended by the op's border,
/// with its kernel, by FFT: computed in f32 on the CPU (a tensor elsewhere
/// or of another dtype is moved and converted, and back). Differentiable.
pub(crate) fn fft_correlate(x: &Tensor, op: FftCorrelate) -> Result<Tensor> {
    let (dev, dt) = (x.device().clone(), x.dtype());
    let x = x
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .contiguous()?;
    let y = x.apply_op1(op)?;
    Ok(y.to_dtype(dt)?.to_device(&dev)?)
}
