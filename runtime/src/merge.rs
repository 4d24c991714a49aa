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
