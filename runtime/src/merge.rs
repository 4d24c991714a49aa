//! The graph ops' runtime: torchvision's centre crop, for `crop(a, like =
//! b)` and `crop(a, size = ..)`, and the element-wise merges `a + b`,
//! `a - b`, `a * b`. The other graph ops are candle's own (`Tensor::cat`,
//! `narrow`, ..).

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::host::with_f32;
use crate::resize::msg;
use crate::Result;

/// The operator of an element-wise merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOp {
    Add,
    Sub,
    Mul,
}

/// Elements from which a merge is split between the runtime's threads.
const PAR_ELEMS: usize = 1 << 16;

/// `a op b`, broadcast as candle's `broadcast_add` / `_sub` / `_mul` (the
/// compiler checked the shapes). In inference on same-shaped, contiguous
/// f32 CPU tensors (a residual connection), one pass over the runtime's
/// threads: candle's own element-wise pool spins for a while after every
/// op, taking the cores from the matrix kernel that runs next (12 % of the
/// encoder layer's profile, its two residual adds the pool's only work).
/// Otherwise, and whenever a gradient is tracked, candle's op.
pub fn merge_binary(a: &Tensor, b: &Tensor, op: MergeOp) -> Result<Tensor> {
    let own = !a.track_op()
        && !b.track_op()
        && a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && a.dims() == b.dims()
        && a.device().is_cpu()
        && b.device().is_cpu();
    if own {
        let n = a.elem_count();
        let y = with_f32(a, |av| {
            with_f32(b, |bv| {
                let mut y: Vec<f32> = Vec::with_capacity(n);
                let f = |yc: &mut [std::mem::MaybeUninit<f32>], ac: &[f32], bc: &[f32]| {
                    for ((y, &x), &z) in yc.iter_mut().zip(ac).zip(bc) {
                        y.write(match op {
                            MergeOp::Add => x + z,
                            MergeOp::Sub => x - z,
                            MergeOp::Mul => x * z,
                        });
                    }
                };
                let dst = &mut y.spare_capacity_mut()[..n];
                if n >= PAR_ELEMS {
                    let chunk = PAR_ELEMS / 4;
                    dst.par_chunks_mut(chunk)
                        .zip(av.par_chunks(chunk).zip(bv.par_chunks(chunk)))
                        .for_each(|(yc, (ac, bc))| f(yc, ac, bc));
                } else {
                    f(dst, av, bv);
                }
                // SAFETY: `f` wrote all `n` values (`av` and `bv` hold `n`
                // each: same shape, contiguous).
                unsafe { y.set_len(n) };
                y
            })
        })
        .flatten();
        if let Some(y) = y {
            return Ok(Tensor::from_vec(y, a.shape(), a.device())?);
        }
    }
    Ok(match op {
        MergeOp::Add => a.broadcast_add(b)?,
        MergeOp::Sub => a.broadcast_sub(b)?,
        MergeOp::Mul => a.broadcast_mul(b)?,
    })
}

/// The concatenation of `xs` along `dim`, like `Tensor::cat`. On f32 CPU
/// tensors no gradient is tracked for, all contiguous: one copy of each
/// input's blocks straight into the output, split between the runtime's
/// threads when large (a U-Net's skip connections: candle's `cat` zeroed
/// its output first and copied element by element on its own pool, 13 %
/// of the restoration U-Net's profile). Otherwise candle's `cat`.
pub fn concat(xs: &[&Tensor], dim: usize) -> Result<Tensor> {
    if let Some(y) = concat_own(xs, dim) {
        return y;
    }
    Ok(Tensor::cat(xs, dim)?)
}

/// [`concat`] on the runtime's threads, or `None` where candle's `cat`
/// must run (a tracked, strided, non-f32 or non-CPU input, mismatched
/// ranks or sizes: candle reports those).
fn concat_own(xs: &[&Tensor], dim: usize) -> Option<Result<Tensor>> {
    let first = xs.first()?;
    let dims = first.dims();
    if dim >= dims.len()
        || xs.iter().any(|x| {
            x.track_op()
                || x.dtype() != DType::F32
                || !x.device().is_cpu()
                || !x.is_contiguous()
                || x.rank() != dims.len()
                || x.dims()
                    .iter()
                    .zip(dims)
                    .enumerate()
                    .any(|(d, (a, b))| d != dim && a != b)
        })
    {
        return None;
    }
    let outer: usize = dims[..dim].iter().product();
    let inner: usize = dims[dim + 1..].iter().product();
    let along: usize = xs.iter().map(|x| x.dims()[dim]).sum();
    let n = outer * along * inner;
    let mut out_dims = dims.to_vec();
    out_dims[dim] = along;
    let mut y: Vec<f32> = Vec::with_capacity(n);
    let dst = crate::conv::cpu::SyncPtr(y.as_mut_ptr());
    // (input, outer index, offset in its block, length, offset in y).
    let mut pieces = Vec::new();
    let mut at_along = 0;
    for (i, x) in xs.iter().enumerate() {
        let block = x.dims()[dim] * inner;
        for o in 0..outer {
            let base = (o * along + at_along) * inner;
            for start in (0..block).step_by(PAR_ELEMS) {
                let len = PAR_ELEMS.min(block - start);
                pieces.push((i, o * block + start, len, base + start));
            }
        }
        at_along += x.dims()[dim];
    }
    let copied = std::sync::atomic::AtomicUsize::new(0);
    let copy = |&(i, from, len, to): &(usize, usize, usize, usize)| {
        with_f32(xs[i], |src| {
            let src = &src[from..from + len];
            // SAFETY: `to .. to + len` is inside `y`'s `n` floats and no
            // other piece writes it (the pieces tile the output).
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.ptr().add(to), len) };
            copied.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        });
    };
    if n >= PAR_ELEMS {
        pieces.par_iter().for_each(copy);
    } else {
        pieces.iter().for_each(copy);
    }
    if copied.into_inner() != n {
        return None;
    }
    // SAFETY: the pieces wrote all `n` floats (counted just above).
    unsafe { y.set_len(n) };
    Some(Tensor::from_vec(y, out_dims, first.device()).map_err(Into::into))
}

/// torchvision's centre-crop offset along one axis for a difference
/// `d = in - out`: `int(round(d / 2.0))` with Python's `round`, which rounds
/// halves to even. Even `d` gives `d / 2`; odd `d = 2k + 1` gives `k` when
/// `k` is even and `k + 1` when `k` is odd (d = 1 -> 0, 3 -> 2, 5 -> 2,
/// 7 -> 4, 9 -> 4).
pub fn center_crop_offset(d: usize) -> usize {
    let k = d / 2;
    if d % 2 == 1 && k % 2 == 1 {
        k + 1
    } else {
        k
    }
}

/// torchvision's `center_crop(x, [h, w])` on `[.., H, W]` (any rank >= 2;
/// U-Net's copy-and-crop): rows `top .. top + h` and columns
/// `left .. left + w` with `top = int(round((H - h) / 2.0))`,
/// `left = int(round((W - w) / 2.0))` — Python's `round`, halves to even,
/// see [`center_crop_offset`]. So an odd difference puts the extra row at
/// the top for `H - h` = 1, 5, 9, .. and at the bottom for 3, 7, 11, ..
/// (torchvision's rule, kept as is). Differentiable.
///
/// Errors on a rank below 2, a zero crop size, or a crop larger than the
/// input (torchvision would zero-pad; here that is treated as a shape bug).
pub fn center_crop(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let rank = x.rank();
    if rank < 2 {
        return Err(msg(format!(
            "center_crop: expected at least 2 dims, got shape {:?}",
            x.dims()
        )));
    }
    let (hd, wd) = (rank - 2, rank - 1);
    let (ih, iw) = (x.dim(hd)?, x.dim(wd)?);
    if h == 0 || w == 0 {
        return Err(msg(format!(
            "center_crop: crop size must be positive, got {h}x{w}"
        )));
    }
    if h > ih || w > iw {
        return Err(msg(format!(
            "center_crop: cannot crop {ih}x{iw} to the larger {h}x{w}"
        )));
    }
    let top = center_crop_offset(ih - h);
    let left = center_crop_offset(iw - w);
    Ok(x.narrow(hd, top, h)?.narrow(wd, left, w)?)
}

#[cfg(test)]
mod tests {

    /// `concat` equals candle's `cat` along every dim, for inputs of
    /// different sizes along it, small and large (split between threads),
    /// and falls back to candle for a strided input.
    #[test]
    fn concat_equals_candles_cat() {
        let dev = candle_core::Device::Cpu;
        for scale in [1usize, 40] {
            let a = Tensor::rand(-1f32, 1.0, (2, 3, 5 * scale, 7), &dev).unwrap();
            for dim in 0..4 {
                let mut d2 = a.dims().to_vec();
                d2[dim] += 2;
                let mut d3 = a.dims().to_vec();
                d3[dim] = 1;
                let b = Tensor::rand(-1f32, 1.0, d2, &dev).unwrap();
                let c = Tensor::rand(-1f32, 1.0, d3, &dev).unwrap();
                let got = super::concat(&[&a, &b, &c], dim).unwrap();
                let want = Tensor::cat(&[&a, &b, &c], dim).unwrap();
                assert_eq!(got.dims(), want.dims());
                let same: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
                let expect: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
                assert_eq!(same, expect, "dim {dim}, scale {scale}");
            }
        }
        let a = Tensor::rand(-1f32, 1.0, (4, 6), &dev).unwrap();
        let t = a.t().unwrap();
        let got = super::concat(&[&t, &t], 0).unwrap();
        let want = Tensor::cat(&[&t, &t], 0).unwrap();
        let d: f32 = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0);
        assert!(
            super::concat(&[&a, &t], 0).is_err(),
            "mismatched sizes: candle's error"
        );
    }
    use candle_core::{Device, Tensor, Var};

    use super::{merge_binary, MergeOp};

    /// The own pass equals candle's ops, below and above the parallel
    /// size, on a non-contiguous operand, and broadcast; with a gradient
    /// to track, candle's op runs and differentiates.
    #[test]
    fn merges_equal_candles_ops() {
        let dev = Device::Cpu;
        for n in [7usize, 70_001] {
            let a = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
            for (op, want) in [
                (MergeOp::Add, (&a + &b).unwrap()),
                (MergeOp::Sub, (&a - &b).unwrap()),
                (MergeOp::Mul, (&a * &b).unwrap()),
            ] {
                let got = merge_binary(&a, &b, op).unwrap();
                let d = (got - want).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{op:?}, {n}");
            }
        }
        let a = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let t = a.t().unwrap();
        let b = Tensor::randn(0f32, 1.0, (4, 3), &dev).unwrap();
        let got = merge_binary(&t, &b, MergeOp::Add).unwrap();
        let want = (t.contiguous().unwrap() + &b).unwrap();
        assert_eq!(
            got.to_vec2::<f32>().unwrap(),
            want.to_vec2::<f32>().unwrap()
        );
        let row = Tensor::randn(0f32, 1.0, (1, 3), &dev).unwrap();
        let got = merge_binary(&b, &row, MergeOp::Mul).unwrap();
        assert_eq!(got.dims(), [4, 3]);
        let v = Var::from_tensor(&b).unwrap();
        let y = merge_binary(v.as_tensor(), &b, MergeOp::Add).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(v.as_tensor()).is_some());
    }
}
