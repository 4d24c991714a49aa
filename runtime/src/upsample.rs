//! Up-sampling and resizing with PyTorch's exact semantics, forward and
//! backward: transposed convolution with groups, nearest and bilinear
//! interpolation to any size, pixel (un)shuffle and torchvision's centre
//! crop.
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

use crate::{conv2d, Conv2dSpec, Epilogue, Result};

fn msg(s: String) -> crate::Error {
    candle_core::Error::Msg(s).into()
}

/// The `[B, C, H, W]` dims of `x`, or an error naming `op`.
fn dims4(op: &str, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match *x.dims() {
        [b, c, h, w] => Ok((b, c, h, w)),
        ref d => Err(msg(format!(
            "{op}: expected a [B, C, H, W] input, got shape {d:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------
// conv_transpose2d
// ---------------------------------------------------------------------------

/// The options of a PyTorch `ConvTranspose2d`, per axis as `(h, w)`.
///
/// Output size per axis (PyTorch's formula, see
/// [`ConvTranspose2dSpec::out_size`]):
/// `out = (in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dSpec {
    /// Step `(sh, sw)` between the input positions' footprints; each >= 1.
    pub stride: (usize, usize),
    /// Rows / columns removed from both sides of the full output.
    pub padding: (usize, usize),
    /// Extra rows / columns added at the end (bottom / right); each must be
    /// smaller than the stride or the dilation of its axis (PyTorch's rule).
    pub output_padding: (usize, usize),
    /// Spacing between kernel taps `(dh, dw)`; each >= 1.
    pub dilation: (usize, usize),
    /// Channel groups; must divide `Cin` and `Cout`.
    pub groups: usize,
}

impl Default for ConvTranspose2dSpec {
    /// Stride 1, no padding, no output padding, no dilation, one group.
    fn default() -> Self {
        ConvTranspose2dSpec {
            stride: (1, 1),
            padding: (0, 0),
            output_padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl ConvTranspose2dSpec {
    /// The output size `(oh, ow)` for an `h x w` input and a `kh x kw`
    /// kernel, or `None` when an axis has no output (size <= 0, or a zero
    /// input, kernel, stride or dilation).
    pub fn out_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> Option<(usize, usize)> {
        let axis = |i: usize, k: usize, s: usize, p: usize, op: usize, d: usize| {
            if i == 0 || k == 0 || s == 0 || d == 0 {
                return None;
            }
            let out =
                (i as i64 - 1) * s as i64 - 2 * p as i64 + (d * (k - 1)) as i64 + op as i64 + 1;
            usize::try_from(out).ok().filter(|&o| o > 0)
        };
        let oh = axis(
            h,
            kh,
            self.stride.0,
            self.padding.0,
            self.output_padding.0,
            self.dilation.0,
        )?;
        let ow = axis(
            w,
            kw,
            self.stride.1,
            self.padding.1,
            self.output_padding.1,
            self.dilation.1,
        )?;
        Some((oh, ow))
    }
}

/// PyTorch's `F.conv_transpose2d(x, w, bias, stride, padding,
/// output_padding, groups, dilation)`.
///
/// `x` is `[B, Cin, H, W]`, `w` is `[Cin, Cout / groups, kh, kw]` (PyTorch's
/// layout), `bias` is `[Cout]`. The output is `[B, Cout, H_out, W_out]` with
/// `H_out = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1` (likewise W).
/// Differentiable in `x`, `w` and `bias`.
///
/// Errors (never panics) on a non-4-D input or kernel, channel counts that
/// do not match or that the groups do not divide, a bias that is not
/// `[Cout]`, a zero stride / dilation / groups, an output padding not
/// smaller than the stride or the dilation, an empty output, or mixed
/// dtypes.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &ConvTranspose2dSpec,
) -> Result<Tensor> {
    const OP: &str = "conv_transpose2d";
    let (_b, cin, h, wd) = dims4(OP, x)?;
    let (wcin, cout_g, kh, kw) = match *w.dims() {
        [a, b, c, d] => (a, b, c, d),
        ref d => {
            return Err(msg(format!(
                "{OP}: expected a [Cin, Cout/groups, kh, kw] weight, got shape {d:?}"
            )))
        }
    };
    let (s, p, op, d, g) = (
        spec.stride,
        spec.padding,
        spec.output_padding,
        spec.dilation,
        spec.groups,
    );
    if s.0 == 0 || s.1 == 0 {
        return Err(msg(format!("{OP}: stride must be positive, got {s:?}")));
    }
    if d.0 == 0 || d.1 == 0 {
        return Err(msg(format!("{OP}: dilation must be positive, got {d:?}")));
    }
    if g == 0 {
        return Err(msg(format!("{OP}: groups must be positive")));
    }
    if kh == 0 || kw == 0 || cout_g == 0 {
        return Err(msg(format!("{OP}: empty weight {:?}", w.dims())));
    }
    if wcin != cin {
        return Err(msg(format!(
            "{OP}: the input has {cin} channels but the weight {:?} expects {wcin} \
             (weight layout is [Cin, Cout/groups, kh, kw])",
            w.dims()
        )));
    }
    if cin % g != 0 {
        return Err(msg(format!(
            "{OP}: groups {g} does not divide the {cin} input channels"
        )));
    }
    if (op.0 >= s.0 && op.0 >= d.0) || (op.1 >= s.1 && op.1 >= d.1) {
        return Err(msg(format!(
            "{OP}: output_padding {op:?} must be smaller than either the stride {s:?} \
             or the dilation {d:?} on each axis"
        )));
    }
    let cout = cout_g * g;
    if let Some(b) = bias {
        if b.dims() != [cout] {
            return Err(msg(format!(
                "{OP}: bias must be [{cout}], got {:?}",
                b.dims()
            )));
        }
    }
    for t in std::iter::once(w).chain(bias) {
        if t.dtype() != x.dtype() {
            return Err(msg(format!(
                "{OP}: x is {:?} but a weight is {:?}",
                x.dtype(),
                t.dtype()
            )));
        }
    }
    let (oh, ow) = spec.out_size(h, wd, kh, kw).ok_or_else(|| {
        msg(format!(
            "{OP}: input {h}x{wd} gives no output with kernel {kh}x{kw}, stride {s:?}, \
             padding {p:?}, output_padding {op:?}, dilation {d:?}"
        ))
    })?;

    // The input with `s - 1` zeros between its rows and columns.
    let mut xu = zero_insert(x, 2, s.0)?;
    xu = zero_insert(&xu, 3, s.1)?;
    // Pad by d(k-1) - p on each side (+ output_padding at the end); a
    // negative amount crops instead. Cropping is done here, padding by the
    // convolution.
    let (pad_h, xu2) = pad_or_crop(&xu, 2, d.0 * (kh - 1), p.0, op.0)?;
    let (pad_w, xu3) = pad_or_crop(&xu2, 3, d.1 * (kw - 1), p.1, op.1)?;
    // [Cin, Cout/g, kh, kw] -> [g, Cin/g, Cout/g, kh, kw] -> [g, Cout/g, Cin/g, kh, kw]
    // -> [Cout, Cin/g, kh, kw], flipped spatially.
    let wt = w
        .reshape((g, cin / g, cout_g, kh, kw))?
        .transpose(1, 2)?
        .reshape((cout, cin / g, kh, kw))?
        .flip(&[2, 3])?;
    let conv = Conv2dSpec {
        stride: (1, 1),
        padding: (pad_h, pad_w),
        dilation: d,
        groups: g,
    };
    let y = conv2d(&xu3, &wt, bias, &conv, Epilogue::None)?;
    debug_assert_eq!(y.dims()[2..], [oh, ow]);
    Ok(y)
}

/// Inserts `s - 1` zeros between consecutive elements along `dim`:
/// `n -> (n - 1) * s + 1`.
fn zero_insert(x: &Tensor, dim: usize, s: usize) -> Result<Tensor> {
    let n = x.dim(dim)?;
    if s == 1 || n <= 1 {
        return Ok(x.clone());
    }
    let mut merged = x.dims().to_vec();
    merged[dim] = n * s;
    Ok(x.unsqueeze(dim + 1)?
        .pad_with_zeros(dim + 1, 0, s - 1)?
        .reshape(merged)?
        .narrow(dim, 0, (n - 1) * s + 1)?)
}

/// For one axis of the zero-inserted input: the `(before, after)` zero
/// padding the convolution should add, `before = ext - p` and
/// `after = ext - p + op`, with negative amounts cropped off `x` instead.
fn pad_or_crop(
    x: &Tensor,
    dim: usize,
    ext: usize,
    p: usize,
    op: usize,
) -> Result<((usize, usize), Tensor)> {
    let before = ext as i64 - p as i64;
    let after = before + op as i64;
    let n = x.dim(dim)? as i64;
    let cut_before = (-before).max(0);
    let cut_after = (-after).max(0);
    let x = if cut_before > 0 || cut_after > 0 {
        // The caller checked that the output is non-empty, so this is positive.
        x.narrow(
            dim,
            cut_before as usize,
            (n - cut_before - cut_after) as usize,
        )?
    } else {
        x.clone()
    };
    Ok(((before.max(0) as usize, after.max(0) as usize), x))
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
