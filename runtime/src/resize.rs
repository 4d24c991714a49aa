//! Up-sampling and resizing with PyTorch's exact semantics, forward and
//! backward: nearest and bilinear interpolation to any size and pixel
//! (un)shuffle. (The transposed convolution is in `conv::transpose`,
//! torchvision's centre crop in `merge`.)
//!
//! candle 0.11 has a `conv_transpose2d` without groups and with one value
//! for stride / padding / dilation on both axes, a bilinear up-sampling
//! without backward, and a nearest up-sampling whose backward only handles
//! integer factors. Everything here is therefore built from differentiable
//! candle ops (`reshape`, `permute`, `narrow`, `pad_with_zeros`,
//! `index_select`, `matmul`) and the runtime's own [`conv2d`](crate::conv2d)
//! (whose backward is PyTorch-exact), so gradients of the input, weight and
//! bias come from autograd and equal PyTorch's:
//!
//! - [`conv_transpose2d`] is a stride-1 convolution of the input with
//!   `stride - 1` zeros inserted between its rows / columns, padded by
//!   `dilation * (k - 1) - padding` on each side (plus `output_padding`
//!   at the end; negative amounts crop), with the kernel transposed per
//!   group (`[Cin, Cout/g]` -> `[Cout/g, Cin/g]`) and flipped spatially.
//! - [`upsample_bilinear2d`] is `A_h · x · A_wᵀ`: two matrix products with
//!   interpolation matrices built on the host from PyTorch's source-index
//!   formula (at most two non-zeros per row).
//! - [`upsample_nearest2d`] is one `index_select` per axis.
//! - [`pixel_shuffle`] / [`pixel_unshuffle`] are a reshape, a permutation
//!   and a reshape; [`center_crop`] is two `narrow`s.
//!
//! Index and weight arithmetic is done in `f32`, as PyTorch does for `f32`
//! inputs (its `nearest` index in particular is `floor(dst * (in / out))`
//! evaluated in `f32`, which this reproduces bit for bit).

use candle_core::Tensor;

use crate::Result;

/// A runtime error with `s` as its message.
pub(crate) fn msg(s: String) -> crate::Error {
    candle_core::Error::Msg(s).into()
}

/// The `[B, C, H, W]` dims of `x`, or an error naming `op`.
pub(crate) fn dims4(op: &str, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match *x.dims() {
        [b, c, h, w] => Ok((b, c, h, w)),
        ref d => Err(msg(format!(
            "{op}: expected a [B, C, H, W] input, got shape {d:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------
// interpolation
// ---------------------------------------------------------------------------

fn check_resize(op: &str, x: &Tensor, out: (usize, usize)) -> Result<(usize, usize)> {
    let (_, _, h, w) = dims4(op, x)?;
    if h == 0 || w == 0 {
        return Err(msg(format!("{op}: empty input {:?}", x.dims())));
    }
    if out.0 == 0 || out.1 == 0 {
        return Err(msg(format!(
            "{op}: output size must be positive, got {out:?}"
        )));
    }
    if !x.dtype().is_float() {
        return Err(msg(format!(
            "{op}: expected a float tensor, got {:?}",
            x.dtype()
        )));
    }
    Ok((h, w))
}

/// PyTorch's `nearest` source index: `min(floor(dst * (in / out)), in - 1)`,
/// with the scale and the product in `f32` as PyTorch computes them.
fn nearest_indices(n_in: usize, n_out: usize) -> Vec<u32> {
    let scale = n_in as f32 / n_out as f32;
    (0..n_out)
        .map(|o| (((o as f32) * scale).floor() as usize).min(n_in - 1) as u32)
        .collect()
}

/// `F.interpolate(x, size=out, mode="nearest")`: output `(i, j)` takes input
/// `(floor(i * H / oh), floor(j * W / ow))` (PyTorch's legacy `nearest`, not
/// `nearest-exact`), computed in `f32` as PyTorch does. Any sizes, up or
/// down, per axis. Differentiable (the gradient of each input element is the
/// sum over the outputs that copy it).
///
/// Errors on a non-4-D or empty input, a zero output size, or an integer
/// dtype.
pub fn upsample_nearest2d(x: &Tensor, out: (usize, usize)) -> Result<Tensor> {
    let (h, w) = check_resize("upsample_nearest2d", x, out)?;
    // candle's index_select needs a contiguous source.
    let mut y = x.contiguous()?;
    for (dim, n_in, n_out) in [(2, h, out.0), (3, w, out.1)] {
        if n_in == n_out {
            continue;
        }
        let idx = Tensor::from_vec(nearest_indices(n_in, n_out), n_out, x.device())?;
        y = y.index_select(&idx, dim)?;
    }
    Ok(y)
}

/// The `[n_out, n_in]` matrix of PyTorch's linear interpolation along one
/// axis (`area_pixel_compute_source_index`, `f32` arithmetic):
///
/// - `align_corners`: `src = dst * (in - 1) / (out - 1)` (scale 0 when
///   `out == 1`);
/// - otherwise `src = max((dst + 0.5) * in / out - 0.5, 0)`;
///
/// then `i0 = floor(src)`, `i1 = min(i0 + 1, in - 1)`, `l = src - i0`, and
/// row `dst` holds `1 - l` at `i0` and `l` at `i1`.
fn linear_matrix(n_in: usize, n_out: usize, align_corners: bool) -> Vec<f32> {
    let scale = if align_corners {
        if n_out > 1 {
            (n_in as f32 - 1.0) / (n_out as f32 - 1.0)
        } else {
            0.0
        }
    } else {
        n_in as f32 / n_out as f32
    };
    let mut m = vec![0f32; n_out * n_in];
    for o in 0..n_out {
        let src = if align_corners {
            scale * o as f32
        } else {
            (scale * (o as f32 + 0.5) - 0.5).max(0.0)
        };
        let i0 = (src as usize).min(n_in - 1);
        let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        let l0 = 1.0 - l1;
        m[o * n_in + i0] += l0;
        m[o * n_in + i1] += l1;
    }
    m
}

/// `F.interpolate(x, size=out, mode="bilinear", align_corners=..)`, up or
/// down (no antialiasing, as PyTorch's default), per axis.
///
/// Computed as `A_h · x · A_wᵀ` with the interpolation matrices of
/// `linear_matrix` (built on the host, in `f32` as PyTorch computes its
/// weights, then cast to `x`'s dtype): exact, differentiable in `x`, and
/// two matrix products. Axes whose size does not change are left alone
/// (their matrix is the identity for both `align_corners` settings).
///
/// Errors on a non-4-D or empty input, a zero output size, or an integer
/// dtype.
pub fn upsample_bilinear2d(x: &Tensor, out: (usize, usize), align_corners: bool) -> Result<Tensor> {
    let (h, w) = check_resize("upsample_bilinear2d", x, out)?;
    let (b, c) = (x.dim(0)?, x.dim(1)?);
    let (dev, dt) = (x.device(), x.dtype());
    let mut y = x.clone();
    if w != out.1 {
        // [B*C*H, W] x [W, ow]
        let awt = Tensor::from_vec(linear_matrix(w, out.1, align_corners), (out.1, w), dev)?
            .to_dtype(dt)?
            .t()?;
        y = y.reshape((b * c * h, w))?.matmul(&awt)?;
    }
    let ow = out.1;
    if h != out.0 {
        // [oh, H] x [B*C, H, ow]
        let ah = Tensor::from_vec(linear_matrix(h, out.0, align_corners), (out.0, h), dev)?
            .to_dtype(dt)?;
        y = ah.broadcast_matmul(&y.reshape((b * c, h, ow))?)?;
    }
    Ok(y.reshape((b, c, out.0, ow))?)
}

// ---------------------------------------------------------------------------
// pixel shuffle, crop
// ---------------------------------------------------------------------------

/// `F.pixel_shuffle(x, r)`: `[B, C*r*r, H, W] -> [B, C, H*r, W*r]`, output
/// `(c, h*r + i, w*r + j)` = input `(c*r*r + i*r + j, h, w)`.
///
/// Errors on a non-4-D input, `r == 0`, or channels not divisible by `r*r`.
pub fn pixel_shuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    let (b, c, h, w) = dims4("pixel_shuffle", x)?;
    if r == 0 {
        return Err(msg("pixel_shuffle: upscale factor must be positive".into()));
    }
    if c % (r * r) != 0 {
        return Err(msg(format!(
            "pixel_shuffle: {c} channels are not divisible by upscale_factor^2 = {}",
            r * r
        )));
    }
    let oc = c / (r * r);
    Ok(x.reshape(vec![b, oc, r, r, h, w])?
        .permute([0, 1, 4, 2, 5, 3])?
        .reshape((b, oc, h * r, w * r))?)
}

/// `F.pixel_unshuffle(x, r)`, the inverse of [`pixel_shuffle`]:
/// `[B, C, H*r, W*r] -> [B, C*r*r, H, W]`.
///
/// Errors on a non-4-D input, `r == 0`, or H / W not divisible by `r`.
pub fn pixel_unshuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    let (b, c, h, w) = dims4("pixel_unshuffle", x)?;
    if r == 0 {
        return Err(msg(
            "pixel_unshuffle: downscale factor must be positive".into()
        ));
    }
    if h % r != 0 || w % r != 0 {
        return Err(msg(format!(
            "pixel_unshuffle: spatial size {h}x{w} is not divisible by downscale_factor {r}"
        )));
    }
    let (oh, ow) = (h / r, w / r);
    Ok(x.reshape(vec![b, c, oh, r, ow, r])?
        .permute([0, 1, 3, 5, 2, 4])?
        .reshape((b, c * r * r, oh, ow))?)
}
