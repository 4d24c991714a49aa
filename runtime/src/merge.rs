//! The graph ops' runtime: torchvision's centre crop, for `crop(a, like =
//! b)` and `crop(a, size = ..)`. The other graph ops are candle's own
//! (`Tensor::cat`, `narrow`, `broadcast_add`, ..).

use candle_core::Tensor;

use crate::resize::msg;
use crate::Result;

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
