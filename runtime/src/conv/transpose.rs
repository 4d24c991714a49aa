//! Transposed 2-D convolution with PyTorch's semantics, forward and
//! backward: groups, and a stride / padding / dilation / output padding per
//! axis, which candle 0.11's `conv_transpose2d` lacks.
//!
//! [`conv_transpose2d`] is a stride-1 convolution (the runtime's own
//! [`conv2d`](crate::conv2d), whose backward is PyTorch-exact) of the input
//! with `stride - 1` zeros inserted between its rows / columns, padded by
//! `dilation * (k - 1) - padding` on each side (plus `output_padding` at the
//! end; negative amounts crop), with the kernel transposed per group
//! (`[Cin, Cout/g]` -> `[Cout/g, Cin/g]`) and flipped spatially. Gradients
//! of the input, weight and bias come from autograd and equal PyTorch's.

use candle_core::Tensor;

use crate::resize::{dims4, msg};
use crate::{conv2d, Conv2dSpec, Epilogue, Result};

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

    if (kh, kw) == s && p == (0, 0) && op == (0, 0) && d == (1, 1) && g == 1 {
        return patch_transpose(x, w, bias, (cout, kh, kw));
    }
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

/// The transposed convolution whose footprints tile the output exactly
/// (kernel = stride, no padding, dilation or groups: U-Net's 2x2 stride-2
/// up-convolution): every output pixel is one input pixel's contribution,
/// `y[b, co, kh i + dy, kw j + dx] = bias[co] + Σ_ci x[b, ci, i, j]
/// w[ci, co, dy, dx]`, so one matrix product `[Cout kh kw, Cin] x [Cin, H W]`
/// per image and a reordering give it, without the stride-1 convolution
/// over a zero-inserted input (which multiplies `kh kw` times as many zeros
/// as values). Differentiable through candle's matmul and reshapes.
fn patch_transpose(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    (cout, kh, kw): (usize, usize, usize),
) -> Result<Tensor> {
    let (b, cin, h, wd) = x.dims4()?;
    let wt = w.reshape((cin, cout * kh * kw))?.t()?;
    let plain =
        |t: &Tensor| !t.track_op() && t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    if plain(x) && plain(w) && bias.is_none_or(plain) {
        // Inference: the product, then one pass that places each value
        // and adds the bias (instead of a 6-d permute copied element by
        // element and a broadcast add, both on candle's pool).
        let z = wt
            .broadcast_matmul(&x.reshape((b, cin, h * wd))?)?
            .contiguous()?;
        let bias = match bias {
            Some(t) => Some(t.contiguous()?.to_vec1::<f32>()?),
            None => None,
        };
        if let Some(y) = crate::host::with_f32(&z, |z| {
            place_patches(z, bias.as_deref(), (b, cout, kh, kw, h, wd))
        }) {
            return Ok(Tensor::from_vec(y, (b, cout, h * kh, wd * kw), x.device())?);
        }
    }
    let z = wt
        .broadcast_matmul(&x.reshape((b, cin, h * wd))?)?
        .reshape((b, cout, kh, kw, h, wd))?
        .permute((0, 1, 4, 2, 5, 3))?
        .contiguous()?
        .reshape((b, cout, h * kh, wd * kw))?;
    Ok(match bias {
        Some(bias) => z.broadcast_add(&bias.reshape((1, cout, 1, 1))?)?,
        None => z,
    })
}

/// `y[b, co, kh i + dy, kw j + dx] = z[b, co, dy, dx, i, j] + bias[co]`:
/// the patch transposed convolution's reordering, one output plane per job
/// on the runtime's threads, each output row written once in order.
fn place_patches(
    z: &[f32],
    bias: Option<&[f32]>,
    (b, cout, kh, kw, h, wd): (usize, usize, usize, usize, usize, usize),
) -> Vec<f32> {
    use rayon::prelude::*;
    let (oh, ow) = (h * kh, wd * kw);
    let mut y = vec![0f32; b * cout * oh * ow];
    y.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(plane, out)| {
            let co = plane % cout;
            let bv = bias.map_or(0.0, |bs| bs[co]);
            let zp = &z[plane * kh * kw * h * wd..][..kh * kw * h * wd];
            for i in 0..h {
                for dy in 0..kh {
                    let row = &mut out[(i * kh + dy) * ow..][..ow];
                    for dx in 0..kw {
                        let src = &zp[((dy * kw + dx) * h + i) * wd..][..wd];
                        for (j, &v) in src.iter().enumerate() {
                            row[j * kw + dx] = v + bv;
                        }
                    }
                }
            }
        });
    y
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
