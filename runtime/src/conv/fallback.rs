//! The convolution from candle's own tensor operations: what runs for dtypes
//! other than f32 and on CUDA, inside the custom op's forward (the op's own
//! backward still supplies the gradients).
//!
//! candle's `conv2d` takes one padding, stride and dilation for both axes;
//! asymmetric padding becomes an explicit zero pad, unequal dilations a
//! kernel with zeros between its taps, unequal strides a stride-1
//! convolution followed by subsampling.

use candle_core::Tensor;

use super::{Conv2dSpec, Epilogue};

pub(super) fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &Conv2dSpec,
    act: Epilogue,
) -> candle_core::Result<Tensor> {
    let ((pt, pb), (pl, pr)) = spec.padding;
    let (sh, sw) = spec.stride;
    let (dh, dw) = spec.dilation;
    let mut x = x.clone();
    let (pad, sym) = if pt == pb && pl == pr && pt == pl {
        (pt, true)
    } else {
        (0, false)
    };
    if !sym {
        x = x.pad_with_zeros(2, pt, pb)?.pad_with_zeros(3, pl, pr)?;
    }
    let (w, dil) = if dh == dw {
        (w.clone(), dh)
    } else {
        (dilate(w, dh, dw)?, 1)
    };
    let y = if sh == sw {
        x.conv2d(&w, pad, sh, dil, spec.groups)?
    } else {
        let y = x.conv2d(&w, pad, 1, dil, spec.groups)?;
        every(&every(&y, 2, sh)?, 3, sw)?
    };
    let y = match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
        None => y,
    };
    act.on_tensor(y)
}

/// Every `step`-th element along `dim`, starting with the first.
fn every(x: &Tensor, dim: usize, step: usize) -> candle_core::Result<Tensor> {
    if step == 1 {
        return Ok(x.clone());
    }
    let idx: Vec<u32> = (0..x.dim(dim)? as u32).step_by(step).collect();
    let idx = Tensor::new(idx, x.device())?;
    x.index_select(&idx, dim)
}

/// The kernel with `d - 1` zeros between taps on each axis.
fn dilate(w: &Tensor, dh: usize, dw: usize) -> candle_core::Result<Tensor> {
    let spread = |w: &Tensor, dim: usize, d: usize| -> candle_core::Result<Tensor> {
        if d == 1 {
            return Ok(w.clone());
        }
        // [.., k] -> [.., k, d] (zeros after each tap) -> [.., k * d] -> drop the tail
        let k = w.dim(dim)?;
        let w = w.unsqueeze(dim + 1)?.pad_with_zeros(dim + 1, 0, d - 1)?;
        w.flatten(dim, dim + 1)?.narrow(dim, 0, (k - 1) * d + 1)
    };
    let w = spread(w, 3, dw)?;
    spread(&w, 2, dh)?.contiguous()
}
