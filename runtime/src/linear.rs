//! `x W^T + b`, the linear layer's product, for `x` `[.., in]` and `w`
//! `[out, in]`: one matrix multiply over the flattened leading dims. In
//! inference (nothing tracks a gradient) on f32 CPU tensors:
//!
//! - up to 4 rows (a classifier at batch 1), matrix-vector products straight
//!   from the weight's memory: each weight row read once for all rows, at
//!   memory speed (AlexNet's and VGG-16's classifiers read 234 and 494 MB
//!   of weights per image); up to 8 where no packed weight is kept;
//! - more rows, the runtime's packed kernel (`rnn_kernel`: AVX-512 or AVX2
//!   register tiles, the bias as the accumulator's start), its weight
//!   packed into panels once and kept ([`linear_prepared`], what generated
//!   code runs, the packed weight cached with the layer's other fusions),
//!   or packed per call by [`linear`] from 512 rows, where packing pays for
//!   itself.
//!
//! Otherwise, and whenever a gradient is tracked, candle's matmul and a
//! bias add.

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Tensor};

use crate::conv::math::simd;
use crate::conv::Epilogue;
use crate::host::with_f32;
use crate::rnn_kernel::Packed;
use crate::Result;

/// Rows from which the packed kernel pays for packing the weight per call.
const KERNEL_ROWS: usize = 512;

/// `x W^T + b` over the last dim of `x`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    product(x, w, b, Epilogue::None, |rows, wv, fout, fin| {
        // Packing the weight per call pays from 512 rows.
        (rows >= KERNEL_ROWS).then(|| Arc::new(Packed::new(wv, fout, fin)))
    })
}

/// A linear layer's weight and bias prepared once for inference
/// ([`prepare_linear`]): the weight packed into the matrix kernel's panels
/// on the first call with more than 4 rows (not before: a classifier run at
/// batch 1 reads the weight as it is, and never holds a second copy), then
/// kept, so every call runs the kernel without packing.
#[derive(Clone)]
pub struct PreparedLinear {
    weight: Tensor,
    bias: Option<Tensor>,
    packed: Arc<OnceLock<Arc<Packed>>>,
}

impl PreparedLinear {
    /// The weight `[out, in]` as given.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Whether the packed copy has been made (a call with more than 4 rows).
    pub fn is_packed(&self) -> bool {
        self.packed.get().is_some()
    }
}

/// `weight` `[out, in]` and `bias` `[out]`, detached, for
/// [`linear_prepared`]: what generated code caches per `Linear` and per
/// attention projection in inference.
pub fn prepare_linear(weight: &Tensor, bias: Option<&Tensor>) -> PreparedLinear {
    PreparedLinear {
        weight: weight.detach(),
        bias: bias.map(Tensor::detach),
        packed: Arc::new(OnceLock::new()),
    }
}

/// [`prepare_linear`] of a layer's parameters (the bias absent or present).
pub fn prepare_linear_params<B: crate::layers::MaybeTensor>(
    weight: &Tensor,
    bias: &B,
) -> PreparedLinear {
    prepare_linear(weight, bias.tensor())
}

/// `act(x W^T + b)`: [`linear`] with prepared weights, from 5 rows on the
/// packed kernel without packing the weight again, with the activation
/// applied to each output tile while it is in cache (a fused activation:
/// `Epilogue::None` for none).
pub fn linear_prepared(x: &Tensor, p: &PreparedLinear, act: Epilogue) -> Result<Tensor> {
    product(x, &p.weight, p.bias.as_ref(), act, |_, wv, fout, fin| {
        Some(Arc::clone(
            p.packed
                .get_or_init(|| Arc::new(Packed::new(wv, fout, fin))),
        ))
    })
}

/// `act(x W^T + b)`: more than [`PACKED_FROM`] rows on the packed kernel
/// where `packed` gives the packed weight (called with the rows and the
/// weight's values); else up to [`MATVEC_ROWS`] rows as matrix-vector
/// products; otherwise, and whenever a gradient is tracked, candle's
/// matmul.
fn product(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    act: Epilogue,
    packed: impl FnOnce(usize, &[f32], usize, usize) -> Option<Arc<Packed>>,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let fin = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / fin.max(1);
    let fout = w.dim(0)?;
    let fast = !x.track_op()
        && !w.track_op()
        && !b.is_some_and(Tensor::track_op)
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && b.is_none_or(|b| b.dtype() == DType::F32 && b.elem_count() == fout)
        && w.dims() == [fout, fin]
        && x.device().is_cpu()
        && w.device().is_cpu();
    let w = if fast { w.contiguous()? } else { w.clone() };
    let kernel = if fast && rows > PACKED_FROM {
        with_f32(&w, |wv| packed(rows, wv, fout, fin)).flatten()
    } else {
        None
    };
    let y = if let Some(packed) = kernel {
        let bias = b.map(|b| b.flatten_all()?.to_vec1::<f32>()).transpose()?;
        let x = x.contiguous()?;
        let n = rows * fout;
        let mut y: Vec<f32> = Vec::with_capacity(n);
        let run = |xv: &[f32]| {
            let dst = &mut y.spare_capacity_mut()[..n];
            crate::rnn_kernel::product_into(dst, bias.as_deref(), xv, rows, &packed, act)
        };
        match with_f32(&x, run) {
            Some(true) => {
                // SAFETY: `product_into` wrote all `n` values.
                unsafe { y.set_len(n) };
                Tensor::from_vec(y, (rows, fout), x.device())?
            }
            _ => act.on_tensor(plain_product(&x, &w, b, rows, fin)?)?,
        }
    } else if fast && rows <= MATVEC_ROWS {
        let xv = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let bv = b.map(|b| b.flatten_all()?.to_vec1::<f32>()).transpose()?;
        match with_f32(&w, |wv| matvec(&xv, rows, wv, fout, fin, bv.as_deref())) {
            Some(mut y) => {
                crate::conv::math::epilogue(act, 0.0, &mut y);
                Tensor::from_vec(y, (rows, fout), x.device())?
            }
            None => act.on_tensor(plain_product(x, &w, b, rows, fin)?)?,
        }
    } else {
        act.on_tensor(plain_product(x, &w, b, rows, fin)?)?
    };
    let mut out = dims;
    if let Some(last) = out.last_mut() {
        *last = fout;
    }
    Ok(y.reshape(out)?)
}

/// candle's matmul and a bias add.
fn plain_product(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    rows: usize,
    fin: usize,
) -> Result<Tensor> {
    let y = x.contiguous()?.reshape((rows, fin))?.matmul(&w.t()?)?;
    Ok(match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// Rows up to which a linear layer in inference runs as matrix-vector
/// products ([`matvec`]): each weight row is read once from memory for all
/// of them, where a matrix multiply packs the weight first.
const MATVEC_ROWS: usize = 8;

/// Rows above which a prepared layer runs on its packed weight instead of
/// matrix-vector products: from 5 rows the products are compute-bound
/// enough that the kernel's register tile wins (AlexNet's classifier at
/// batch 8: 23 % of the forward in the matrix-vector loop, which reads each
/// weight row once per input row).
const PACKED_FROM: usize = 4;

/// How far ahead of its reads (in floats, 8 KB) [`matvec_cols`] asks for
/// the weight: the rows are read once, from memory, and the hardware's
/// own prefetch restarts at every 4 KB page. AlexNet's classifier at batch
/// 1 (234 MB of weights) took 0.88x its time with 4 KB ahead, a little
/// less with 8 KB, more again with 16 KB.
const PREFETCH: usize = 2048;

simd! {
    /// `y[r, j] = b[j] + Σ_k x[r, k] w[j, k]` for output columns `j0..j0 + n`
    /// (`y` holds the rows' `n` values each, row after row). Eight
    /// accumulators per row, so the loads stream at memory speed, and
    /// the weight prefetched [`PREFETCH`] floats ahead.
    fn matvec_cols(x: &[f32], rows: usize, w: &[f32], fin: usize, b: Option<&[f32]>, j0: usize, y: &mut [f32]) {
        let n = y.len() / rows.max(1);
        for jj in 0..n {
            let j = j0 + jj;
            let wr = &w[j * fin..(j + 1) * fin];
            for r in 0..rows {
                let xr = &x[r * fin..(r + 1) * fin];
                let mut acc = [0f32; 16];
                let (wc, xc) = (wr.chunks_exact(16), xr.chunks_exact(16));
                let (wt, xt) = (wc.remainder(), xc.remainder());
                for (a, c) in wc.zip(xc) {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: a prefetch reads nothing; the address may lie
                    // past the slice.
                    unsafe {
                        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                        _mm_prefetch::<_MM_HINT_T0>(a.as_ptr().wrapping_add(PREFETCH).cast());
                    }
                    for i in 0..16 {
                        acc[i] += a[i] * c[i];
                    }
                }
                let mut s: f32 = acc.iter().sum();
                for (a, c) in wt.iter().zip(xt) {
                    s += a * c;
                }
                y[r * n + jj] = s + b.map_or(0.0, |b| b[j]);
            }
        }
    }
}

/// `x W^T + b` for a few rows: output columns split into chunks over the
/// threads, each weight row read once for every row of `x`.
fn matvec(
    x: &[f32],
    rows: usize,
    w: &[f32],
    fout: usize,
    fin: usize,
    b: Option<&[f32]>,
) -> Vec<f32> {
    use rayon::prelude::*;
    // Chunks of about 64 KB of weight: enough to split over the threads,
    // large enough that scheduling costs nothing.
    let cols = (16 * 1024 / fin.max(1)).max(8).min(fout.max(1));
    let chunks = fout.div_ceil(cols);
    let parts: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .with_min_len(crate::conv::min_len(rows * fin * fout, chunks))
        .map(|c| {
            let j0 = c * cols;
            let n = cols.min(fout - j0);
            let mut y = vec![0f32; rows * n];
            matvec_cols(x, rows, w, fin, b, j0, &mut y);
            y
        })
        .collect();
    let mut y = vec![0f32; rows * fout];
    for (c, part) in parts.iter().enumerate() {
        let (j0, n) = (c * cols, part.len() / rows.max(1));
        for r in 0..rows {
            y[r * fout + j0..r * fout + j0 + n].copy_from_slice(&part[r * n..(r + 1) * n]);
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    /// The matrix-vector path (up to 8 rows, no gradient) equals candle's
    /// matmul, at input widths that fill no 16-float chunk and output
    /// counts that fill no chunk of columns.
    #[test]
    fn matvec_path_equals_matmul() {
        let dev = Device::Cpu;
        for (rows, fin, fout, bias) in [(1, 9, 5, true), (3, 1000, 37, false), (8, 33, 300, true)] {
            let x = Tensor::randn(0f32, 1.0, (rows, fin), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (fout, fin), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, fout, &dev).unwrap();
            let b = bias.then_some(&b);
            let y = super::linear(&x, &w, b).unwrap();
            let want = x.matmul(&w.t().unwrap()).unwrap();
            let want = match b {
                Some(b) => want.broadcast_add(b).unwrap(),
                None => want,
            };
            let err = (y - &want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(
                err.to_scalar::<f32>().unwrap() < 1e-3,
                "{rows}x{fin}x{fout}"
            );
        }
    }

    /// Prepared weights give candle's matmul at any row count: matrix-vector
    /// products up to 4 rows (no packed copy made), the kernel beyond, its
    /// packed weight made once and shared by the clones a cache hands out.
    #[test]
    fn prepared_path_equals_matmul() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (45, 70), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 45, &dev).unwrap();
        let p = super::prepare_linear(&w, Some(&b));
        for rows in [1, 4, 5, 8, 9, 33, 600] {
            if rows == 5 {
                assert!(!p.is_packed(), "packed before a call with more than 4 rows");
            }
            let x = Tensor::randn(0f32, 1.0, (rows, 70), &dev).unwrap();
            let y = super::linear_prepared(&x, &p.clone(), super::Epilogue::None).unwrap();
            let want = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let err = (y - &want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(err.to_scalar::<f32>().unwrap() < 1e-3, "{rows} rows");
        }
        assert!(p.is_packed());
        // A fused activation: the same as applying it after, on every path.
        for act in [
            super::Epilogue::Relu,
            super::Epilogue::Gelu,
            super::Epilogue::LeakyRelu(0.1),
        ] {
            for rows in [3, 40] {
                let x = Tensor::randn(0f32, 1.0, (rows, 70), &dev).unwrap();
                let y = super::linear_prepared(&x, &p, act).unwrap();
                let plain = super::linear_prepared(&x, &p, super::Epilogue::None).unwrap();
                let want = act.on_tensor(plain).unwrap();
                let err = (y - &want).unwrap().abs().unwrap().max_all().unwrap();
                assert!(
                    err.to_scalar::<f32>().unwrap() < 1e-5,
                    "{act:?}, {rows} rows"
                );
            }
        }
    }

    /// The kernel path (enough rows, no gradient) equals candle's matmul;
    /// with a gradient to track, the matmul path runs and differentiates.
    #[test]
    fn kernel_path_equals_matmul_and_training_keeps_gradients() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 200, 24), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (37, 24), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 37, &dev).unwrap();
        let y = super::linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y.dims(), [3, 200, 37]);
        let want = x
            .reshape((600, 24))
            .unwrap()
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
            .reshape((3, 200, 37))
            .unwrap();
        let err = (y - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(err.to_scalar::<f32>().unwrap() < 1e-4);
        let wv = Var::from_tensor(&w).unwrap();
        let y = super::linear(&x, wv.as_tensor(), None).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(wv.as_tensor()).is_some());
    }
}
