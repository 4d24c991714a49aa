//! Fixed-kernel image filters, applied to each channel of a `[B, C, H, W]`
//! tensor on its own (depthwise): the linear filters of the lecture (mean,
//! Gaussian, Sobel, Laplacian, impulse, shift, any constant kernel) through
//! [`filter2d`], and the median through [`median2d`].
//!
//! A kernel is applied as PyTorch's `conv2d` applies one: a correlation,
//! `y[i, j] = sum_{t, s} k[t, s] * xp[i + t, j + s]`, where `xp` is the input
//! padded by the [`Border`] rule. The compiler knows every kernel's values and
//! picks a [`Lowering`]; every lowering computes the same result (to float
//! rounding), and all but the median are differentiable in the input:
//!
//! - [`Lowering::Direct`]: one depthwise convolution with the `kh x kw`
//!   kernel (the runtime's [`conv2d`](crate::conv2d), a vectorised direct
//!   loop on the CPU);
//! - [`Lowering::Separable`]: a rank-one kernel `k = col ⊗ row` as two 1-D
//!   passes, `kh + kw` multiply-adds per pixel instead of `kh * kw`: on the
//!   CPU in f32 up to 1024² pixels per plane the runtime's own loops, which
//!   read the border through its index maps; otherwise two depthwise 1-D
//!   convolutions of a padded copy;
//! - [`Lowering::Banded`]: the same two 1-D passes as two matrix products,
//!   `A_h · x · A_w`, with banded matrices built on the host; the border rule
//!   is folded into the matrices, so no padded copy is made (on the CPU in
//!   f32, `gemm` on the blocks of each matrix its band reaches);
//! - [`Lowering::Tap`]: a kernel with a single non-zero tap (the impulse, a
//!   shift) is a crop of the padded input, times the tap (exact; on the CPU
//!   in f32 read straight from the input);
//! - [`Lowering::Fft`]: the convolution theorem: the input padded by the
//!   border rule, then the correlation as a product of spectra (`realfft`
//!   along the rows, `rustfft` down the columns, on a transform of the padded
//!   size rounded up to a fast length), cropped to the output. Any kernel;
//!   its cost grows as `N log N` in the padded size and hardly with the
//!   kernel. Computed in f32 on the CPU (a tensor elsewhere is moved there
//!   and back); differentiable through a candle custom op whose backward is
//!   the same op with the kernel flipped.
//!
//! Border rules, for the input `a b c d` padded by 2 on each side:
//!
//! | rule | padded | PyTorch `F.pad` | SciPy `ndimage` | OpenCV |
//! |---|---|---|---|---|
//! | `Zeros` | `0 0 a b c d 0 0` | `constant` | `constant` | `BORDER_CONSTANT` |
//! | `Reflect` | `c b a b c d c b` | `reflect` | `mirror` | `BORDER_REFLECT_101` (default) |
//! | `Symmetric` | `b a a b c d d c` | — | `reflect` (default) | `BORDER_REFLECT` |
//! | `Replicate` | `a a a b c d d d` | `replicate` | `nearest` | `BORDER_REPLICATE` |
//! | `Circular` | `c d a b c d a b` | `circular` | `wrap` | `BORDER_WRAP` |
//!
//! Reflection and wrapping continue periodically when the padding is longer
//! than the input (as SciPy does; PyTorch refuses such paddings).

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::conv::cpu::matmul_par;

use crate::filter_fft::{fft_correlate, FftCorrelate, Kern};
use crate::{conv2d, Conv2dSpec, Epilogue, Result};

fn msg(s: String) -> crate::Error {
    candle_core::Error::Msg(s).into()
}

/// How the input is extended past its edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Border {
    /// Zeros.
    Zeros,
    /// Mirrored about the edge pixel, which is not repeated (PyTorch's
    /// `reflect`).
    Reflect,
    /// Mirrored about the edge, which is repeated (SciPy's `reflect`).
    Symmetric,
    /// The edge pixel repeated.
    Replicate,
    /// Wrapped around (periodic).
    Circular,
}

impl Border {
    /// The input index that padded index `i` (which may lie outside
    /// `0..n`) reads, or `None` for a zero. `n` must be at least 1.
    pub fn source(self, i: i64, n: usize) -> Option<usize> {
        let n = n as i64;
        if (0..n).contains(&i) {
            return Some(i as usize);
        }
        let j = match self {
            Border::Zeros => return None,
            Border::Replicate => i.clamp(0, n - 1),
            Border::Circular => i.rem_euclid(n),
            Border::Symmetric => {
                let m = i.rem_euclid(2 * n);
                if m < n {
                    m
                } else {
                    2 * n - 1 - m
                }
            }
            Border::Reflect => {
                if n == 1 {
                    0
                } else {
                    let m = i.rem_euclid(2 * n - 2);
                    if m < n {
                        m
                    } else {
                        2 * n - 2 - m
                    }
                }
            }
        };
        Some(j as usize)
    }
}

/// A kernel's values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Taps<'a> {
    /// All `kh * kw` of them, row-major (as `conv2d` applies a kernel: not
    /// flipped).
    Full(&'a [f32]),
    /// A rank-one kernel, `k[t, s] = col[t] * row[s]` (`kh` and `kw` taps).
    Outer { col: &'a [f32], row: &'a [f32] },
}

/// How [`filter2d`] computes a filter (the choices are described in the
/// `filter` module's docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lowering {
    /// One depthwise convolution with the whole kernel.
    Direct,
    /// Two 1-D convolutions: down the columns with `col`, then along the
    /// rows with `row` ([`Taps::Outer`] only).
    Separable,
    /// The two 1-D passes as two banded matrix products ([`Taps::Outer`]
    /// only).
    Banded,
    /// The kernel's only non-zero tap is at `(t, s)`: a crop of the padded
    /// input, times the tap.
    Tap { t: usize, s: usize },
    /// The padded input and the kernel multiplied in the frequency domain.
    Fft,
}

/// A linear filter: its kernel, border and output size, and how to run it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilterSpec<'a> {
    pub taps: Taps<'a>,
    /// `(kh, kw)`.
    pub size: (usize, usize),
    /// `((top, bottom), (left, right))`: `((kh - 1) / 2, kh / 2)`-style for
    /// a `same` output, zeros for `valid`.
    pub pad: ((usize, usize), (usize, usize)),
    pub border: Border,
    pub lowering: Lowering,
}

impl FilterSpec<'_> {
    /// The output `(oh, ow)` for an `h x w` input:
    /// `oh = h + top + bottom - kh + 1`, the same along W.
    pub fn out_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let ((t, b), (l, r)) = self.pad;
        let (kh, kw) = self.size;
        let oh = (h + t + b + 1).checked_sub(kh)?;
        let ow = (w + l + r + 1).checked_sub(kw)?;
        (oh > 0 && ow > 0 && kh > 0 && kw > 0).then_some((oh, ow))
    }

    fn check(&self, x: &Tensor) -> Result<(usize, usize, usize, usize, usize, usize)> {
        let (b, c, h, w) = dims4("filter2d", x)?;
        let (kh, kw) = self.size;
        match self.taps {
            Taps::Full(k) if k.len() != kh * kw => {
                return Err(msg(format!(
                    "filter2d: a {kh} x {kw} kernel needs {} values, got {}",
                    kh * kw,
                    k.len()
                )));
            }
            Taps::Outer { col, row } if col.len() != kh || row.len() != kw => {
                return Err(msg(format!(
                    "filter2d: the 1-D factors of a {kh} x {kw} kernel have {kh} and {kw} taps, got {} and {}",
                    col.len(),
                    row.len()
                )));
            }
            _ => {}
        }
        match self.lowering {
            Lowering::Separable | Lowering::Banded if matches!(self.taps, Taps::Full(_)) => {
                return Err(msg(format!(
                    "filter2d: {:?} needs the kernel as its 1-D factors (`Taps::Outer`)",
                    self.lowering
                )));
            }
            Lowering::Tap { t, s } if t >= kh || s >= kw => {
                return Err(msg(format!(
                    "filter2d: tap ({t}, {s}) is outside the {kh} x {kw} kernel"
                )));
            }
            _ => {}
        }
        let Some((oh, ow)) = self.out_size(h, w) else {
            return Err(msg(format!(
                "filter2d: a {kh} x {kw} kernel leaves no output on a {h} x {w} input padded by {:?}",
                self.pad
            )));
        };
        Ok((b, c, h, w, oh, ow))
    }
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

/// `x` padded along `dim` by `(lo, hi)` with the `border` rule
/// (differentiable: zeros are `pad_with_zeros`, the others one
/// `index_select`).
pub fn pad_dim(x: &Tensor, dim: usize, (lo, hi): (usize, usize), border: Border) -> Result<Tensor> {
    if lo == 0 && hi == 0 {
        return Ok(x.clone());
    }
    let n = x.dim(dim)?;
    if n == 0 {
        return Err(msg(format!("pad: dim {dim} of {:?} is empty", x.dims())));
    }
    if border == Border::Zeros {
        return Ok(x.pad_with_zeros(dim, lo, hi)?);
    }
    let idx: Vec<u32> = (-(lo as i64)..(n + hi) as i64)
        .map(|i| border.source(i, n).unwrap_or(0) as u32)
        .collect();
    let idx = Tensor::from_vec(idx, lo + n + hi, x.device())?;
    Ok(x.index_select(&idx, dim)?)
}

/// `x` `[B, C, H, W]` padded by `((top, bottom), (left, right))` with the
/// `border` rule.
/// `border` rule. On the CPU in f32 one pass of row copies (a custom op
/// whose backward adds each extended position into the one it reads);
/// otherwise two `index_select`s.
pub fn pad2d(x: &Tensor, pad: ((usize, usize), (usize, usize)), border: Border) -> Result<Tensor> {
    let (_, _, h, w) = dims4("pad2d", x)?;
    if pad == ((0, 0), (0, 0)) {
        return Ok(x.clone());
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 && h > 0 && w > 0 {
        let ((t, b), (l, r)) = pad;
        let op = BorderWindow {
            off: (-(t as i64), -(l as i64)),
            out: (h + t + b, w + l + r),
            border,
        };
        return Ok(x.contiguous()?.apply_op1(op)?);
    }
    let x = pad_dim(x, 2, pad.0, border)?;
    pad_dim(&x, 3, pad.1, border)
}

/// The index maps of `h x w` extended by `pad` with `border`: for each
/// extended row (column), the input row (column) it reads, or `None` for
/// a zero.
pub(crate) fn border_maps(
    (h, w): (usize, usize),
    ((t, b), (l, r)): ((usize, usize), (usize, usize)),
    border: Border,
) -> (Vec<Option<usize>>, Vec<Option<usize>>) {
    let rows = (0..h + t + b)
        .map(|i| border.source(i as i64 - t as i64, h))
        .collect();
    let cols = (0..w + l + r)
        .map(|j| border.source(j as i64 - l as i64, w))
        .collect();
    (rows, cols)
}

/// The adjoint of the extension: each plane of `gp` (`rows.len() x
/// cols.len()`) added into the `h x w` input positions it reads.
pub(crate) fn fold_border(
    gp: &[f32],
    (h, w): (usize, usize),
    rows: &[Option<usize>],
    cols: &[Option<usize>],
) -> Vec<f32> {
    let (hp, wp) = (rows.len(), cols.len());
    let planes = gp.len() / (hp * wp).max(1);
    let mut gx = vec![0f32; planes * h * w];
    gx.par_chunks_mut(h * w)
        .zip(gp.par_chunks(hp * wp))
        .for_each(|(gx, gp)| {
            for (i, r) in rows.iter().enumerate() {
                let Some(r) = r else { continue };
                let (src, dst) = (&gp[i * wp..(i + 1) * wp], &mut gx[r * w..(r + 1) * w]);
                for (v, c) in src.iter().zip(cols) {
                    if let Some(c) = c {
                        dst[*c] += v;
                    }
                }
            }
        });
    gx
}

/// A window of the input extended by the border rule, on the CPU in f32:
/// output `(i, j)` reads extended position `(i + off.0, j + off.1)`
/// (input coordinates; outside the input the border rule decides). A
/// [`pad2d`] is the window at `(-top, -left)` of the extended size; a crop
/// of the padded input ([`Lowering::Tap`]) is the window at
/// `(t - top, s - left)` of the output size.
struct BorderWindow {
    off: (i64, i64),
    out: (usize, usize),
    border: Border,
}

impl BorderWindow {
    fn maps(&self, h: usize, w: usize) -> (Vec<Option<usize>>, Vec<Option<usize>>) {
        let rows = (0..self.out.0)
            .map(|i| self.border.source(i as i64 + self.off.0, h))
            .collect();
        let cols = (0..self.out.1)
            .map(|j| self.border.source(j as i64 + self.off.1, w))
            .collect();
        (rows, cols)
    }
}

impl candle_core::CustomOp1 for BorderWindow {
    fn name(&self) -> &'static str {
        "border-window"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (data, [b, c, h, w]) = f32_nchw("pad2d", storage, layout)?;
        let (rows, cols) = self.maps(h, w);
        let (oh, ow) = self.out;
        // The output columns that read the input in order: one copy.
        let lo = (-self.off.1).clamp(0, ow as i64) as usize;
        let hi = (w as i64 - self.off.1).clamp(lo as i64, ow as i64) as usize;
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_mut(ow).enumerate().for_each(|(r, orow)| {
            let (img, i) = (r / oh, r % oh);
            let Some(y) = rows[i] else { return };
            let src = &data[img * h * w + y * w..img * h * w + (y + 1) * w];
            if hi > lo {
                let s0 = (lo as i64 + self.off.1) as usize;
                orow[lo..hi].copy_from_slice(&src[s0..s0 + hi - lo]);
            }
            for j in (0..lo).chain(hi..ow) {
                orow[j] = cols[j].map_or(0.0, |x| src[x]);
            }
        });
        Ok((
            candle_core::CpuStorage::F32(out),
            candle_core::Shape::from((b, c, oh, ow)),
        ))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (b, c, h, w) = arg.dims4()?;
        let (rows, cols) = self.maps(h, w);
        let gp: Vec<f32> = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let gx = fold_border(&gp, (h, w), &rows, &cols);
        Ok(Some(Tensor::from_vec(gx, (b, c, h, w), arg.device())?))
    }
}

/// A depthwise kernel tensor `[C, 1, kh, kw]` holding `k` for every channel.
fn depthwise(k: &[f32], c: usize, kh: usize, kw: usize, x: &Tensor) -> Result<Tensor> {
    let mut v = Vec::with_capacity(c * k.len());
    for _ in 0..c {
        v.extend_from_slice(k);
    }
    Ok(Tensor::from_vec(v, (c, 1, kh, kw), x.device())?.to_dtype(x.dtype())?)
}

/// A depthwise correlation of `x` with `k` (`[kh, kw]` taps), zero padding
/// `pad` folded into the convolution.
fn depthwise_conv(
    x: &Tensor,
    k: &[f32],
    (kh, kw): (usize, usize),
    pad: ((usize, usize), (usize, usize)),
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let w = depthwise(k, c, kh, kw, x)?;
    let spec = Conv2dSpec {
        padding: pad,
        groups: c,
        ..Conv2dSpec::default()
    };
    conv2d(x, &w, None, &spec, Epilogue::None)
}

/// The banded matrix `[n_out, n]` of a 1-D correlation with `taps` over an
/// input of `n` padded by `lo` with the `border` rule:
/// `m[i, source(i + t - lo)] += taps[t]`.
fn band(taps: &[f32], n: usize, lo: usize, n_out: usize, border: Border) -> Vec<f32> {
    let mut m = vec![0f32; n_out * n];
    for i in 0..n_out {
        for (t, &k) in taps.iter().enumerate() {
            if let Some(j) = border.source(i as i64 + t as i64 - lo as i64, n) {
                m[i * n + j] += k;
            }
        }
    }
    m
}

impl Taps<'_> {
    /// The whole `kh x kw` kernel, row-major.
    fn full(&self) -> Vec<f32> {
        match *self {
            Taps::Full(k) => k.to_vec(),
            Taps::Outer { col, row } => col
                .iter()
                .flat_map(|c| row.iter().map(move |r| c * r))
                .collect(),
        }
    }
}

/// Applies the linear filter `spec` to every channel of `x` `[B, C, H, W]`:
/// `[B, C, oh, ow]` with `(oh, ow)` = [`FilterSpec::out_size`].
/// Differentiable in `x`.
pub fn filter2d(x: &Tensor, spec: &FilterSpec) -> Result<Tensor> {
    let (_, _, _, _, oh, ow) = spec.check(x)?;
    let (kh, kw) = spec.size;
    // Zeros are folded into the convolutions' own padding; the other rules
    // pad first.
    let (xp, ((pt, pb), (pl, pr))) = match (spec.border, spec.lowering) {
        (_, Lowering::Banded | Lowering::Fft | Lowering::Tap { .. }) | (Border::Zeros, _) => {
            (x.clone(), spec.pad)
        }
        _ => (pad2d(x, spec.pad, spec.border)?, ((0, 0), (0, 0))),
    };
    match (spec.lowering, spec.taps) {
        (Lowering::Direct, taps) => {
            depthwise_conv(&xp, &taps.full(), (kh, kw), ((pt, pb), (pl, pr)))
        }
        (Lowering::Separable, Taps::Outer { col, row }) => {
            let (h, w) = (x.dim(2)?, x.dim(3)?);
            if x.device().is_cpu() && x.dtype() == DType::F32 && h * w <= SEPARABLE_IN_PLACE_MAX {
                // Both passes read the border through its index maps.
                let op = SeparableOp(BandedOp {
                    col: col.to_vec(),
                    row: row.to_vec(),
                    pad: spec.pad,
                    border: spec.border,
                });
                return Ok(x.contiguous()?.apply_op1(op)?);
            }
            let y = depthwise_conv(&xp, col, (kh, 1), ((pt, pb), (0, 0)))?;
            depthwise_conv(&y, row, (1, kw), ((0, 0), (pl, pr)))
        }
        (Lowering::Banded, Taps::Outer { col, row }) => {
            // y = A_h · x · A_w with A_h [oh, h] and A_w [w, ow]: the border
            // rule lives in the matrices, so nothing is padded.
            let op = BandedOp {
                col: col.to_vec(),
                row: row.to_vec(),
                pad: spec.pad,
                border: spec.border,
            };
            if x.device().is_cpu() && x.dtype() == DType::F32 {
                Ok(x.contiguous()?.apply_op1(op)?)
            } else {
                Ok(op.dense(x)?)
            }
        }
        (Lowering::Fft, taps) => {
            let kern = match taps {
                Taps::Full(k) => Kern::Full(k.to_vec()),
                Taps::Outer { col, row } => Kern::Outer {
                    col: col.to_vec(),
                    row: row.to_vec(),
                },
            };
            let op = FftCorrelate {
                kern,
                kh,
                kw,
                pad: spec.pad,
                border: spec.border,
            };
            fft_correlate(x, op)
        }
        (Lowering::Tap { t, s }, taps) => {
            let y = if x.device().is_cpu() && x.dtype() == DType::F32 {
                // The crop read straight from the input.
                let op = BorderWindow {
                    off: (
                        t as i64 - spec.pad.0 .0 as i64,
                        s as i64 - spec.pad.1 .0 as i64,
                    ),
                    out: (oh, ow),
                    border: spec.border,
                };
                x.contiguous()?.apply_op1(op)?
            } else {
                pad2d(x, spec.pad, spec.border)?
                    .narrow(2, t, oh)?
                    .narrow(3, s, ow)?
            };
            let k = taps.full()[t * kw + s];
            if k == 1.0 {
                Ok(y.contiguous()?)
            } else {
                Ok(y.affine(k as f64, 0.0)?)
            }
        }
        // `check` refused a full kernel for the two 1-D lowerings.
        (Lowering::Separable | Lowering::Banded, Taps::Full(k)) => {
            depthwise_conv(&xp, k, (kh, kw), ((pt, pb), (pl, pr)))
        }
    }
}

/// `sqrt(gx² + gy²)`, the gradient magnitude of two derivative filters'
/// outputs (of the same shape).
pub fn gradient_magnitude(gx: &Tensor, gy: &Tensor) -> Result<Tensor> {
    Ok((gx.sqr()? + gy.sqr()?)?.sqrt()?)
}

/// The median of each `kh x kw` window of every channel of `x`
/// `[B, C, H, W]`, padded by `pad` with the `border` rule: `[B, C, oh, ow]`
/// (the sizes of [`FilterSpec::out_size`]). With an even number of taps it
/// is the upper of the two middle values (SciPy's `median_filter`). Not
/// differentiable: the result carries no gradient. Computed on the CPU in
/// f32 whatever the device and dtype (and moved back).
pub fn median2d(
    x: &Tensor,
    (kh, kw): (usize, usize),
    pad: ((usize, usize), (usize, usize)),
    border: Border,
) -> Result<Tensor> {
    let (b, c, h, w) = dims4("median2d", x)?;
    let spec = FilterSpec {
        taps: Taps::Full(&[]),
        size: (kh, kw),
        pad,
        border,
        lowering: Lowering::Direct,
    };
    let Some((oh, ow)) = spec.out_size(h, w) else {
        return Err(msg(format!(
            "median2d: a {kh} x {kw} window leaves no output on a {h} x {w} input padded by {pad:?}"
        )));
    };
    // Per output row and column: the input row / column each tap reads.
    let rows: Vec<Option<usize>> = (0..oh + kh - 1)
        .map(|i| border.source(i as i64 - pad.0 .0 as i64, h))
        .collect();
    let cols: Vec<Option<usize>> = (0..ow + kw - 1)
        .map(|j| border.source(j as i64 - pad.1 .0 as i64, w))
        .collect();
    let mut out = vec![0f32; b * c * oh * ow];
    let fill = |data: &[f32], out: &mut [f32]| {
        let g = MedianGeom::new((h, w), (kh, kw), (oh, ow), &rows, &cols);
        if (kh, kw) == (5, 5) && median5::available() {
            median5::run(data, &g, out);
            return;
        }
        if kh * kw <= MEDIAN_NETWORK_MAX && !has_nan(data) {
            median_by_network(data, &g, out);
        } else {
            out.par_chunks_mut(ow).enumerate().for_each(|(r, out_row)| {
                let plane = &data[(r / oh) * h * w..(r / oh + 1) * h * w];
                median_row_sorting(plane, &g, r % oh, out_row);
            });
        }
    };
    // The input borrowed where it is contiguous f32 on the CPU.
    let xc = x.contiguous()?;
    if crate::host::with_f32(&xc, |d| fill(d, &mut out)).is_none() {
        let data: Vec<f32> = xc
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        fill(&data, &mut out);
    }
    let y = Tensor::from_vec(out, (b, c, oh, ow), &Device::Cpu)?;
    Ok(y.to_dtype(x.dtype())?.to_device(x.device())?)
}

/// Windows of up to this many taps (7 x 7) take the median by a
/// compare-exchange network run on many pixels at once.
const MEDIAN_NETWORK_MAX: usize = 49;

/// A median filter's sizes, and the input row and column each padded row
/// and column reads (`None`: zero).
struct MedianGeom<'a> {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    rows: &'a [Option<usize>],
    cols: &'a [Option<usize>],
    /// `cols` as runs `(first padded column, first source column or None
    /// for zeros, length)`: a padded row is a few copies.
    runs: Vec<(usize, Option<usize>, usize)>,
}

impl<'a> MedianGeom<'a> {
    fn new(
        (h, w): (usize, usize),
        (kh, kw): (usize, usize),
        (oh, ow): (usize, usize),
        rows: &'a [Option<usize>],
        cols: &'a [Option<usize>],
    ) -> Self {
        let mut runs: Vec<(usize, Option<usize>, usize)> = Vec::new();
        for (j, c) in cols.iter().enumerate() {
            match (runs.last_mut(), c) {
                (Some((_, Some(s), n)), Some(x)) if *s + *n == *x => *n += 1,
                (Some((_, None, n)), None) => *n += 1,
                _ => runs.push((j, *c, 1)),
            }
        }
        MedianGeom {
            h,
            w,
            kh,
            kw,
            oh,
            ow,
            rows,
            cols,
            runs,
        }
    }

    /// Padded row `i` of `plane` into `dst` (`cols.len()` floats).
    fn pad_row(&self, plane: &[f32], i: usize, dst: &mut [f32]) {
        let Some(y) = self.rows[i] else {
            dst.fill(0.0);
            return;
        };
        let src = &plane[y * self.w..(y + 1) * self.w];
        for &(j, s, n) in &self.runs {
            match s {
                Some(s) => dst[j..j + n].copy_from_slice(&src[s..s + n]),
                None => dst[j..j + n].fill(0.0),
            }
        }
    }
}

/// Whether `v` holds a NaN: or-reductions over fixed chunks, which
/// vectorise (an early exit per element does not).
fn has_nan(v: &[f32]) -> bool {
    v.chunks(256)
        .any(|c| c.iter().fold(false, |a, &x| a | x.is_nan()))
}

/// Output row `i` of one plane by sorting each window (`total_cmp`: NaN
/// sorts above every number, as SciPy and PyTorch order it).
fn median_row_sorting(plane: &[f32], g: &MedianGeom, i: usize, out_row: &mut [f32]) {
    let mid = g.kh * g.kw / 2;
    let mut win = Vec::with_capacity(g.kh * g.kw);
    for (j, o) in out_row.iter_mut().enumerate() {
        win.clear();
        for src_r in &g.rows[i..i + g.kh] {
            for src_c in &g.cols[j..j + g.kw] {
                win.push(match (src_r, src_c) {
                    (Some(y), Some(x)) => plane[y * g.w + x],
                    _ => 0.0,
                });
            }
        }
        let (_, m, _) = win.select_nth_unstable_by(mid, f32::total_cmp);
        *o = *m;
    }
}

/// A compare-exchange network `(lo, hi)` (each puts the smaller value on
/// wire `lo`) that leaves the `mid`-th smallest of `n` values on wire
/// `mid`: Batcher's odd-even merge sort of the next power of two, without
/// the comparators that touch a wire past `n` (those wires hold +inf, and
/// such a comparator changes nothing), pruned to the comparators wire `mid`
/// depends on.
fn selection_network(n: usize, mid: usize) -> Vec<(usize, usize)> {
    let p2 = n.next_power_of_two();
    let mut net = Vec::new();
    let mut p = 1;
    while p < p2 {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < p2 {
                for i in 0..k.min(p2 - j - k) {
                    if (i + j) / (2 * p) == (i + j + k) / (2 * p) && i + j + k < n {
                        net.push((i + j, i + j + k));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    let mut need = vec![false; n];
    if let Some(m) = need.get_mut(mid) {
        *m = true;
    }
    let mut kept: Vec<(usize, usize)> = net
        .into_iter()
        .rev()
        .filter(|&(a, b)| {
            let keep = need[a] || need[b];
            if keep {
                need[a] = true;
                need[b] = true;
            }
            keep
        })
        .collect();
    kept.reverse();
    kept
}

/// The median of every window by [`selection_network`], `LANES` output
/// pixels of a row at a time (the compare-exchanges of a lane block are
/// elementwise min / max, which vectorise). The input has no NaN (the
/// network would order it differently from `total_cmp`).
fn median_by_network(data: &[f32], g: &MedianGeom, out: &mut [f32]) {
    let (kh, kw, oh, ow) = (g.kh, g.kw, g.oh, g.ow);
    const LANES: usize = 64;
    let n = kh * kw;
    let mid = n / 2;
    let net = selection_network(n, mid);
    let (ph, pw) = (g.rows.len(), g.cols.len());
    let padded = pad_planes(data, g);
    out.par_chunks_mut(ow).enumerate().for_each_init(
        || vec![[0f32; LANES]; n],
        |v, (r, out_row)| {
            let (img, i) = (r / oh, r % oh);
            let plane = &padded[img * ph * pw..(img + 1) * ph * pw];
            for j0 in (0..ow).step_by(LANES) {
                let m = LANES.min(ow - j0);
                for t in 0..kh {
                    let src = &plane[(i + t) * pw..(i + t + 1) * pw];
                    for s in 0..kw {
                        v[t * kw + s][..m].copy_from_slice(&src[j0 + s..j0 + s + m]);
                    }
                }
                run_network(v, &net);
                out_row[j0..j0 + m].copy_from_slice(&v[mid][..m]);
            }
        },
    );
}

/// Each plane of `data` (`h x w`) extended by the border rule once
/// (`rows.len() x cols.len()`).
fn pad_planes(data: &[f32], g: &MedianGeom) -> Vec<f32> {
    let (ph, pw) = (g.rows.len(), g.cols.len());
    let planes = data.len() / (g.h * g.w).max(1);
    let mut padded = vec![0f32; planes * ph * pw];
    padded
        .par_chunks_mut(pw.max(1))
        .enumerate()
        .for_each(|(r, prow)| {
            let plane = &data[(r / ph) * g.h * g.w..(r / ph + 1) * g.h * g.w];
            g.pad_row(plane, r % ph, prow);
        });
    padded
}

/// The 5 x 5 median with the compare-exchanges in vector registers (8
/// pixels per AVX2 vector, 16 per AVX-512 vector). Per output row, each
/// padded column's 5 values are sorted once (9 compare-exchanges), and
/// shared by the 5 windows that contain the column. A window is then a 5 x
/// 5 matrix with sorted columns; sorting its rows keeps the columns sorted,
/// and in a matrix with sorted rows and columns the element at (row a,
/// column b), 1-based, has at least `a * b - 1` values below it and
/// `(6 - a) * (6 - b) - 1` above, so only the 13 with both counts at most
/// 12 can be the median, and 6 of the others lie below it: the median of
/// the 25 is the median of those 13. The network below is the row sorts
/// and Batcher's odd-even merge network for the median of 13, pruned to
/// what wire 12 depends on: 81 compare-exchanges per window instead of the
/// 113 of a pruned 25-input network, with the column sorts' 9 on top (the
/// unit test checks it against sorting).
mod median5 {
    /// Hands the window network to macro `$m` as `(lo, hi)` literals (so
    /// that the kernels expand it into straight-line code, each value in a
    /// register; a loop over an array left them on the stack). Wire
    /// `5 * a + b` holds the `a`-th smallest value of the window's column
    /// `b`; the median ends on wire 12.
    macro_rules! window_network {
        ($m:ident!($($args:tt)*)) => {
            $m!($($args)*;
        (0, 1) (2, 3) (0, 2) (1, 3) (1, 2) (0, 4) (2, 4) (3, 4) (5, 6) (7, 8) (5, 7) (6, 8)
        (6, 7) (5, 9) (7, 9) (6, 7) (8, 9) (10, 11) (12, 13) (10, 12) (11, 13) (11, 12) (10, 14)
        (12, 14) (11, 12) (13, 14) (15, 16) (17, 18) (15, 17) (16, 18) (16, 17) (15, 19)
        (17, 19) (16, 17) (20, 21) (22, 23) (20, 22) (21, 23) (21, 22) (20, 24) (22, 24)
        (21, 22) (3, 4) (7, 8) (9, 11) (12, 13) (15, 16) (17, 20) (3, 7) (4, 8) (9, 12) (11, 13)
        (15, 17) (16, 20) (4, 7) (11, 12) (16, 17) (3, 9) (4, 11) (7, 12) (8, 13) (15, 21)
        (7, 9) (8, 11) (17, 21) (4, 7) (8, 9) (11, 12) (16, 17) (20, 21) (3, 15) (4, 16) (7, 17)
        (8, 20) (9, 21) (9, 15) (11, 16) (12, 17) (8, 11) (12, 15) (11, 12)
            )
        };
    }

    /// Compare-exchanges on literal wires of `$w` by `$min` and `$max`, in
    /// straight-line code.
    macro_rules! cx {
        ($min:path, $max:path, $w:ident; $(($a:literal, $b:literal))*) => {
            $(
                let (p, q) = ($w[$a], $w[$b]);
                $w[$a] = $min(p, q);
                $w[$b] = $max(p, q);
            )*
        };
    }

    #[cfg(test)]
    macro_rules! pair_array {
        (; $(($a:literal, $b:literal))*) => {
            [$(($a, $b)),*]
        };
    }

    /// The window network as data (for the test).
    #[cfg(test)]
    pub(super) const WINDOW: [(usize, usize); 81] = window_network!(pair_array!());

    /// Sorts 5 wires (Batcher's network for 5).
    #[cfg(test)]
    pub(super) const SORT5: [(usize, usize); 9] = [
        (0, 1),
        (2, 3),
        (0, 2),
        (1, 3),
        (1, 2),
        (0, 4),
        (2, 4),
        (1, 2),
        (3, 4),
    ];

    /// Whether the CPU runs this kernel (AVX2).
    pub(super) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Output rows per task: each task pads its rows' inputs (4 more rows)
    /// into its own scratch.
    const BLOCK: usize = 16;

    /// The medians of every 5 x 5 window of each plane of `data` into
    /// `out` (`oh x ow` per plane). A block of rows whose inputs hold a NaN
    /// is sorted instead (min and max would order the NaN arbitrarily).
    pub(super) fn run(data: &[f32], g: &super::MedianGeom, out: &mut [f32]) {
        use rayon::prelude::*;
        let (oh, ow) = (g.oh, g.ow);
        let (ph, pw) = (g.rows.len(), g.cols.len());
        if g.kh != 5 || g.kw != 5 || oh + 4 != ph || ow + 4 != pw || oh == 0 || ow == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let wide = crate::rnn_kernel::has_avx512();
            out.par_chunks_mut(oh * ow)
                .enumerate()
                .flat_map(|(img, plane_out)| {
                    plane_out
                        .par_chunks_mut(BLOCK * ow)
                        .enumerate()
                        .map(move |(k, o)| (img, k, o))
                })
                .for_each_init(
                    || (vec![0f32; (BLOCK + 4) * pw], vec![0f32; 5 * (pw + 16)]),
                    |(rows, cs), (img, k, block_out)| {
                        let plane = &data[img * g.h * g.w..(img + 1) * g.h * g.w];
                        let i0 = k * BLOCK;
                        let n = block_out.len() / ow;
                        for t in 0..n + 4 {
                            g.pad_row(plane, i0 + t, &mut rows[t * pw..(t + 1) * pw]);
                        }
                        if super::has_nan(&rows[..(n + 4) * pw]) {
                            for (t, o) in block_out.chunks_exact_mut(ow).enumerate() {
                                super::median_row_sorting(plane, g, i0 + t, o);
                            }
                            return;
                        }
                        for (t, o) in block_out.chunks_exact_mut(ow).enumerate() {
                            let five = &rows[t * pw..(t + 5) * pw];
                            // SAFETY: the CPU has AVX2 (`available`, checked
                            // by the caller), and AVX-512F where `wide`; the
                            // slices are as the kernels expect.
                            unsafe {
                                if wide {
                                    avx512::row(five, pw, cs, o)
                                } else {
                                    avx2::row(five, pw, cs, o)
                                }
                            }
                        }
                    },
                );
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (data, out);
        }
    }

    /// One output row of one kernel: `rows` holds the 5 padded input rows
    /// (`pw` each), `cs` is scratch for the 5 sorted rows of columns (at
    /// least `5 * (pw + LANES)`), `out` gets `pw - 4` medians.
    macro_rules! row_kernel {
        ($name:ident, $feature:literal, $v:ty, $lanes:literal, $zero:ident, $load:ident, $store:ident, $min:ident, $max:ident) => {
            #[cfg(target_arch = "x86_64")]
            pub(super) mod $name {
                use std::arch::x86_64::*;


                /// # Safety
                /// The CPU has the target feature; `rows` has 5 rows of
                /// `pw` floats, `cs` at least `5 * (pw + LANES)`, `out`
                /// `pw - 4`.
                #[target_feature(enable = $feature)]
                pub(in super::super) unsafe fn row(rows: &[f32], pw: usize, cs: &mut [f32], out: &mut [f32]) {
                    const L: usize = $lanes;
                    let stride = pw + L;
                    let ow = pw - 4;
                    if rows.len() < 5 * pw || cs.len() < 5 * stride || out.len() < ow {
                        return;
                    }
                    // Sorted columns: cs[a * stride + x] is the a-th smallest
                    // of column x of the 5 rows (the tail past pw zeros).
                    let full = pw / L * L;
                    let mut x = 0;
                    while x < pw {
                        let mut v: [$v; 5] = [$zero(); 5];
                        if x < full {
                            for (t, vt) in v.iter_mut().enumerate() {
                                // SAFETY: x + L <= pw: inside row t.
                                *vt = unsafe { $load(rows.as_ptr().add(t * pw + x)) };
                            }
                        } else {
                            for (t, vt) in v.iter_mut().enumerate() {
                                let mut buf = [0f32; L];
                                buf[..pw - x].copy_from_slice(&rows[t * pw + x..(t + 1) * pw]);
                                // SAFETY: `buf` holds L floats.
                                *vt = unsafe { $load(buf.as_ptr()) };
                            }
                        }
                        cx!($min, $max, v; (0, 1) (2, 3) (0, 2) (1, 3) (1, 2) (0, 4) (2, 4) (1, 2) (3, 4));
                        for (a, va) in v.iter().enumerate() {
                            // SAFETY: a * stride + x + L <= 5 * stride
                            // (x < pw + L - L... x <= pw - 1 < stride - L + 1).
                            unsafe { $store(cs.as_mut_ptr().add(a * stride + x), *va) };
                        }
                        x += L;
                    }
                    let mut j = 0;
                    while j < ow {
                        let mut v: [$v; 25] = [$zero(); 25];
                        for a in 0..5 {
                            for b in 0..5 {
                                // SAFETY: j + b + L <= ow - 1 + 4 + L < stride
                                // + 4... within row a of `cs` (j < ow, so
                                // j + 4 + L <= pw + L - 1 < stride).
                                v[5 * a + b] = unsafe { $load(cs.as_ptr().add(a * stride + j + b)) };
                            }
                        }
                        window_network!(cx!($min, $max, v));
                        let m = L.min(ow - j);
                        if m == L {
                            // SAFETY: j + L <= ow.
                            unsafe { $store(out.as_mut_ptr().add(j), v[12]) };
                        } else {
                            let mut buf = [0f32; L];
                            // SAFETY: `buf` holds L floats.
                            unsafe { $store(buf.as_mut_ptr(), v[12]) };
                            out[j..j + m].copy_from_slice(&buf[..m]);
                        }
                        j += L;
                    }
                }
            }
        };
    }

    row_kernel!(
        avx2,
        "avx2",
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_min_ps,
        _mm256_max_ps
    );
    row_kernel!(
        avx512,
        "avx512f",
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_min_ps,
        _mm512_max_ps
    );
}

/// Runs the compare-exchanges `net` on the lanes of `v` (no NaN there),
/// in the widest vectors the CPU has.
fn run_network<const L: usize>(v: &mut [[f32; L]], net: &[(usize, usize)]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { run_network_avx2(v, net) };
            return;
        }
    }
    run_network_plain(v, net);
}

/// `(a, b) <- (min(a, b), max(a, b))` lane by lane, for each `(a, b)` of
/// `net` (`a < b`).
#[inline(always)]
fn run_network_plain<const L: usize>(v: &mut [[f32; L]], net: &[(usize, usize)]) {
    for &(a, b) in net {
        let (lo, hi) = v.split_at_mut(b);
        for (x, y) in lo[a].iter_mut().zip(hi[0].iter_mut()) {
            let (p, q) = (*x, *y);
            *x = p.min(q);
            *y = p.max(q);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_network_avx2<const L: usize>(v: &mut [[f32; L]], net: &[(usize, usize)]) {
    run_network_plain(v, net);
}

/// A custom op's input as contiguous f32 `[B, C, H, W]` data: the slice
/// and the four sizes, or an error naming the op.
pub(crate) fn f32_nchw<'a>(
    op: &str,
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
) -> candle_core::Result<(&'a [f32], [usize; 4])> {
    let data = crate::host::f32_slice(op, storage, layout)?;
    let [b, c, h, w] = *layout.shape().dims() else {
        candle_core::bail!("{op}: expected [B, C, H, W], got {:?}", layout.shape());
    };
    Ok((data, [b, c, h, w]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the compare-exchanges `net` on `v`, one value per wire.
    fn run_network_scalar(net: &[(usize, usize)], v: &mut [f32]) {
        for &(a, b) in net {
            if v[b] < v[a] {
                v.swap(a, b);
            }
        }
    }

    /// The pruned networks select the median of every 0/1 input (the 0-1
    /// principle: then of every input) for the small windows, and of many
    /// random inputs for the larger ones.
    #[test]
    fn selection_networks_select_the_median() {
        for n in [1usize, 3, 9, 15, 25] {
            let mid = n / 2;
            let net = selection_network(n, mid);
            if n <= 15 {
                for bits in 0u32..(1 << n) {
                    let mut v: Vec<f32> = (0..n).map(|i| ((bits >> i) & 1) as f32).collect();
                    let mut sorted = v.clone();
                    sorted.sort_by(f32::total_cmp);
                    run_network_scalar(&net, &mut v);
                    assert_eq!(v[mid], sorted[mid], "n {n} bits {bits:b}");
                }
            }
        }
        let mut state = 12345u64;
        for n in [25usize, 35, 49] {
            let mid = n / 2;
            let net = selection_network(n, mid);
            for _ in 0..2000 {
                let mut v: Vec<f32> = (0..n)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((state >> 40) % 17) as f32
                    })
                    .collect();
                let mut sorted = v.clone();
                sorted.sort_by(f32::total_cmp);
                run_network_scalar(&net, &mut v);
                assert_eq!(v[mid], sorted[mid], "n {n}");
            }
        }
        // Pruning keeps fewer comparators than the sort: 5 x 5.
        assert!(selection_network(25, 12).len() < 150);
    }

    /// The 5 x 5 kernel's networks: SORT5 sorts every 0/1 column, and the
    /// window network leaves the median on wire 12 for every 0/1 window
    /// whose columns are sorted (each column is its count of ones, 6^5
    /// windows; by the 0-1 principle this holds for every real input with
    /// sorted columns, which is what the column sort gives it).
    #[test]
    fn the_5x5_networks_select_the_median() {
        for bits in 0u32..32 {
            let mut v: Vec<f32> = (0..5).map(|i| ((bits >> i) & 1) as f32).collect();
            let mut sorted = v.clone();
            sorted.sort_by(f32::total_cmp);
            run_network_scalar(&median5::SORT5, &mut v);
            assert_eq!(v, sorted);
        }
        for code in 0..6usize.pow(5) {
            // Column b has `ones[b]` ones at its top ranks.
            let ones: Vec<usize> = (0..5).map(|b| code / 6usize.pow(b as u32) % 6).collect();
            let mut v = vec![0f32; 25];
            for (b, &n) in ones.iter().enumerate() {
                for a in 5 - n..5 {
                    v[5 * a + b] = 1.0;
                }
            }
            let total: usize = ones.iter().sum();
            let want = if total > 12 { 1.0 } else { 0.0 };
            run_network_scalar(&median5::WINDOW, &mut v);
            assert_eq!(v[12], want, "ones per column {ones:?}");
        }
    }

    /// `median2d` 5 x 5 through the kernel equals sorting every window,
    /// for each border at odd sizes, and a block of rows whose input holds
    /// a NaN is sorted (NaN above every number, as `total_cmp` orders it).
    #[test]
    fn median_5x5_equals_sorting_for_every_border_and_nan() {
        let (b, c, h, w) = (1usize, 2usize, 37usize, 45usize);
        let mut v: Vec<f32> = (0..b * c * h * w)
            .map(|i| ((i * 7919) % 31) as f32 - 15.0)
            .collect();
        v[c * h * w / 2 + 3] = f32::NAN;
        let x = Tensor::from_vec(v.clone(), (b, c, h, w), &Device::Cpu).unwrap();
        for border in [
            Border::Zeros,
            Border::Reflect,
            Border::Symmetric,
            Border::Replicate,
            Border::Circular,
        ] {
            for pad in [((2, 2), (2, 2)), ((0, 0), (0, 0)), ((1, 3), (4, 0))] {
                let got = median2d(&x, (5, 5), pad, border).unwrap();
                let (_, _, oh, ow) = got.dims4().unwrap();
                let rows: Vec<Option<usize>> = (0..oh + 4)
                    .map(|i| border.source(i as i64 - pad.0 .0 as i64, h))
                    .collect();
                let cols: Vec<Option<usize>> = (0..ow + 4)
                    .map(|j| border.source(j as i64 - pad.1 .0 as i64, w))
                    .collect();
                let g = MedianGeom::new((h, w), (5, 5), (oh, ow), &rows, &cols);
                let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
                for p in 0..b * c {
                    for i in 0..oh {
                        let mut want = vec![0f32; ow];
                        median_row_sorting(&v[p * h * w..(p + 1) * h * w], &g, i, &mut want);
                        let row = &got[(p * oh + i) * ow..(p * oh + i + 1) * ow];
                        for (a, e) in row.iter().zip(&want) {
                            assert!(
                                a.to_bits() == e.to_bits() || (a.is_nan() && e.is_nan()),
                                "{border:?} {pad:?} plane {p} row {i}: {row:?} against {want:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The 5 x 5 kernel (AVX2, and AVX-512 where the CPU has it) equals the
    /// median by sorting, at widths around the vector sizes, with ties.
    #[test]
    fn the_5x5_kernel_equals_sorting() {
        if !median5::available() {
            return;
        }
        let mut state = 99u64;
        for (ph, pw) in [
            (5usize, 5usize),
            (6, 12),
            (9, 13),
            (7, 20),
            (8, 21),
            (5, 37),
            (11, 40),
        ] {
            let planes = 2;
            let padded: Vec<f32> = (0..planes * ph * pw)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) % 23) as f32 - 11.0
                })
                .collect();
            let (oh, ow) = (ph - 4, pw - 4);
            let mut want = vec![0f32; planes * oh * ow];
            for p in 0..planes {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut win: Vec<f32> = (0..25)
                            .map(|t| padded[(p * ph + i + t / 5) * pw + j + t % 5])
                            .collect();
                        win.sort_by(f32::total_cmp);
                        want[(p * oh + i) * ow + j] = win[12];
                    }
                }
            }
            let mut got = vec![f32::NAN; planes * oh * ow];
            let (rows, cols): (Vec<_>, Vec<_>) =
                ((0..ph).map(Some).collect(), (0..pw).map(Some).collect());
            let g = MedianGeom::new((ph, pw), (5, 5), (oh, ow), &rows, &cols);
            median5::run(&padded, &g, &mut got);
            assert_eq!(got, want, "{ph} x {pw}");
            // The AVX2 kernel too, where the run above took AVX-512.
            let mut cs = vec![0f32; 5 * (pw + 16)];
            for p in 0..planes {
                for i in 0..oh {
                    let rows = &padded[(p * ph + i) * pw..(p * ph + i + 5) * pw];
                    let mut row = vec![f32::NAN; ow];
                    // SAFETY: the CPU has AVX2 (checked above); the slices
                    // are as the kernel expects.
                    unsafe { median5::avx2::row(rows, pw, &mut cs, &mut row) };
                    assert_eq!(
                        row[..],
                        want[(p * oh + i) * ow..(p * oh + i + 1) * ow],
                        "avx2 {ph} x {pw}"
                    );
                }
            }
        }
    }
}

/// The blocks `(o0, o1, s0, s1)` of a banded `[n_out, n]` matrix of `taps`
/// over an input extended by `lo` with `border`: output rows `o0..o1` read
/// only input rows `s0..s1` (`s0 == s1`: none, the rows are zeros).
fn band_blocks(
    taps: usize,
    n: usize,
    lo: usize,
    n_out: usize,
    border: Border,
) -> Vec<(usize, usize, usize, usize)> {
    let bs = netdsl_summary::band_block(taps);
    (0..n_out)
        .step_by(bs)
        .map(|o0| {
            let o1 = (o0 + bs).min(n_out);
            let (mut s0, mut s1) = (usize::MAX, 0);
            for o in o0..o1 {
                for t in 0..taps {
                    if let Some(j) = border.source(o as i64 + t as i64 - lo as i64, n) {
                        s0 = s0.min(j);
                        s1 = s1.max(j + 1);
                    }
                }
            }
            (o0, o1, s0.min(s1), s1)
        })
        .collect()
}

/// The banded form: `A_h · x · A_w` per plane (see [`band`]).
struct BandedOp {
    col: Vec<f32>,
    row: Vec<f32>,
    pad: ((usize, usize), (usize, usize)),
    border: Border,
}

impl BandedOp {
    /// `(A_h [oh, h], A_w [ow, w])` for an `h x w` input.
    fn matrices(&self, h: usize, w: usize) -> Option<(Vec<f32>, Vec<f32>, usize, usize)> {
        let ((t, b), (l, r)) = self.pad;
        let oh = (h + t + b + 1).checked_sub(self.col.len())?;
        let ow = (w + l + r + 1).checked_sub(self.row.len())?;
        Some((
            band(&self.col, h, t, oh, self.border),
            band(&self.row, w, l, ow, self.border),
            oh,
            ow,
        ))
    }

    /// The same with candle's matrix multiply, for any device and dtype
    /// (differentiable as it is).
    fn dense(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = dims4("filter2d", x)?;
        let Some((ah, aw, oh, ow)) = self.matrices(h, w) else {
            return Err(msg(format!(
                "filter2d: the banded form leaves no output on {h} x {w}"
            )));
        };
        let dev = x.device();
        let ah = Tensor::from_vec(ah, (oh, h), dev)?.to_dtype(x.dtype())?;
        let aw = Tensor::from_vec(aw, (ow, w), dev)?
            .to_dtype(x.dtype())?
            .t()?;
        let n = b * c;
        let y = x.contiguous()?.reshape((n * h, w))?.matmul(&aw)?;
        let y = ah.broadcast_left(n)?.matmul(&y.reshape((n, h, ow))?)?;
        Ok(y.reshape((b, c, oh, ow))?)
    }
}

impl candle_core::CustomOp1 for BandedOp {
    fn name(&self) -> &'static str {
        "filter2d-banded"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use crate::conv::cpu::SyncPtr;
        let threads = candle_core::utils::get_num_threads();
        // Few jobs: let the matrix multiply split each over the threads
        // (even at 64 x 64 this beat one thread: 63 against 83 us).
        let inner = |jobs: usize| {
            if jobs < 2 * threads && threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            }
        };
        let (x, [b, c, h, w]) = f32_nchw("filter2d (banded)", storage, layout)?;
        let Some((ah, aw, oh, ow)) = self.matrices(h, w) else {
            candle_core::bail!("filter2d (banded): no output on {h} x {w}");
        };
        let planes = b * c;
        let ((t, _), (l, _)) = self.pad;
        // Along W: y [planes * h, ow] = x [planes * h, w] · A_wᵀ, by column
        // blocks and chunks of rows.
        const ROWS: usize = 256;
        let cb = band_blocks(self.row.len(), w, l, ow, self.border);
        let m = planes * h;
        let mut y = vec![0f32; m * ow];
        let yp = SyncPtr(y.as_mut_ptr());
        let chunks = m.div_ceil(ROWS);
        let par = inner(cb.len() * chunks);
        (0..cb.len() * chunks).into_par_iter().for_each(|job| {
            let ((o0, o1, s0, s1), r0) = (cb[job / chunks], (job % chunks) * ROWS);
            let rows = ROWS.min(m - r0);
            if s1 <= s0 {
                return;
            }
            // SAFETY: job (block, chunk) alone writes rows r0..r0 + rows,
            // columns o0..o1 of y; x and A_w cover what is read.
            unsafe {
                matmul_par(
                    par,
                    (rows, o1 - o0, s1 - s0),
                    (yp.ptr().add(r0 * ow + o0), ow, false),
                    (x.as_ptr().add(r0 * w + s0), w, 1),
                    (aw.as_ptr().add(o0 * w + s0), 1, w),
                );
            }
        });
        // Along H: z [oh, ow] = A_h · y [h, ow] per plane, by row blocks
        // and chunks of columns.
        const COLS: usize = 512;
        let rb = band_blocks(self.col.len(), h, t, oh, self.border);
        let mut z = vec![0f32; planes * oh * ow];
        let zp = SyncPtr(z.as_mut_ptr());
        let cchunks = ow.div_ceil(COLS);
        let per_plane = rb.len() * cchunks;
        let par = inner(planes * per_plane);
        (0..planes * per_plane).into_par_iter().for_each(|job| {
            let (p, rest) = (job / per_plane, job % per_plane);
            let ((i0, i1, s0, s1), c0) = (rb[rest / cchunks], (rest % cchunks) * COLS);
            let cols = COLS.min(ow - c0);
            if s1 <= s0 {
                return;
            }
            // SAFETY: job (plane, block, chunk) alone writes rows i0..i1,
            // columns c0..c0 + cols of plane p of z.
            unsafe {
                matmul_par(
                    par,
                    (i1 - i0, cols, s1 - s0),
                    (zp.ptr().add(p * oh * ow + i0 * ow + c0), ow, false),
                    (ah.as_ptr().add(i0 * h + s0), h, 1),
                    (y.as_ptr().add(p * h * ow + s0 * ow + c0), ow, 1),
                );
            }
        });
        Ok((
            candle_core::CpuStorage::F32(z),
            candle_core::Shape::from((b, c, oh, ow)),
        ))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // x -> A_h x A_w: the gradient is A_hᵀ g A_wᵀ... with A_w as
        // stored ([ow, w], applied transposed): A_hᵀ · g · A_w.
        let (b, c, h, w) = arg.dims4()?;
        let Some((ah, aw, oh, ow)) = self.matrices(h, w) else {
            candle_core::bail!("filter2d (banded): no output on {h} x {w}");
        };
        let dev = arg.device();
        let ah = Tensor::from_vec(ah, (oh, h), dev)?
            .to_dtype(grad.dtype())?
            .t()?;
        let aw = Tensor::from_vec(aw, (ow, w), dev)?.to_dtype(grad.dtype())?;
        let n = b * c;
        let g = grad.contiguous()?.reshape((n * oh, ow))?.matmul(&aw)?;
        let g = ah.broadcast_left(n)?.matmul(&g.reshape((n, oh, w))?)?;
        Ok(Some(g.reshape((b, c, h, w))?))
    }
}

/// The separable form on the CPU in f32: along W, each input row extended
/// by the border's column map and correlated with `row` (`h x ow`); then
/// down H, each output row the sum of `col[t]` times the rows the border's
/// row map names. Both passes are
/// `y += a * x` over contiguous rows. The backward is the banded form's
/// (the same linear map).
struct SeparableOp(BandedOp);

/// The largest `h * w` the in-place separable form takes (1024^2); above,
/// its fresh intermediate's page faults cost more than the two depthwise
/// convolutions (2048^2, 3 taps: 12 ms against 8 ms), which take over.
const SEPARABLE_IN_PLACE_MAX: usize = 1 << 20;

thread_local! {
    /// The separable form's intermediate, kept between calls.
    static SEPARABLE_TMP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `y += a * x`, lane by lane.
#[inline(always)]
fn axpy_plain(y: &mut [f32], a: f32, x: &[f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

#[inline(always)]
fn taps_sum_plain<'a>(y: &mut [f32], taps: &[f32], src: impl Fn(usize) -> &'a [f32]) {
    y.fill(0.0);
    for (t, a) in taps.iter().enumerate() {
        axpy_plain(y, *a, src(t));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn taps_sum_avx2<'a>(y: &mut [f32], taps: &[f32], src: impl Fn(usize) -> &'a [f32]) {
    taps_sum_plain(y, taps, src);
}

/// `y = sum_t taps[t] * src(t)`, in the widest vectors the CPU has.
fn taps_sum<'a>(y: &mut [f32], taps: &[f32], src: impl Fn(usize) -> &'a [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { taps_sum_avx2(y, taps, src) };
            return;
        }
    }
    taps_sum_plain(y, taps, src);
}

impl candle_core::CustomOp1 for SeparableOp {
    fn name(&self) -> &'static str {
        "filter2d-separable"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (x, [b, c, h, w]) = f32_nchw("filter2d (separable)", storage, layout)?;
        let op = &self.0;
        let (kh, kw) = (op.col.len(), op.row.len());
        let (rows, cols) = border_maps((h, w), op.pad, op.border);
        let (hp, wp) = (rows.len(), cols.len());
        if hp < kh || wp < kw || h == 0 || w == 0 {
            candle_core::bail!("filter2d (separable): no output on {h} x {w}");
        }
        let (oh, ow) = (hp - kh + 1, wp - kw + 1);
        let planes = b * c;
        // Along W: every input row, extended, correlated with `row`.
        let l = op.pad.1 .0;
        // The intermediate is kept for the thread's next call (a fresh
        // large buffer costs a page fault per page); a nested call finds it
        // borrowed and allocates its own.
        let mut own = Vec::new();
        let mut kept =
            SEPARABLE_TMP.with(|c| c.try_borrow_mut().ok().map(|mut v| std::mem::take(&mut *v)));
        let tmp = kept.as_mut().unwrap_or(&mut own);
        tmp.resize(planes * h * ow, 0.0);
        let tmp = &mut tmp[..planes * h * ow];
        tmp.par_chunks_mut(ow).enumerate().for_each_init(
            || vec![0f32; wp],
            |ext, (r, out)| {
                let src = &x[r * w..(r + 1) * w];
                ext[l..l + w].copy_from_slice(src);
                for j in (0..l).chain(l + w..wp) {
                    ext[j] = cols[j].map_or(0.0, |c| src[c]);
                }
                let ext = &ext[..];
                taps_sum(out, &op.row, |s| &ext[s..s + ow]);
            },
        );
        // Down H: each output row from the `kh` rows the row map names (a
        // zero row where it names none); consecutive rows share their
        // window, which stays in cache.
        let zeros = vec![0f32; ow];
        let tmp_ref = &*tmp;
        let mut y = vec![0f32; planes * oh * ow];
        y.par_chunks_mut(ow).enumerate().for_each(|(r, out)| {
            let (p, i) = (r / oh, r % oh);
            let plane = &tmp_ref[p * h * ow..(p + 1) * h * ow];
            taps_sum(out, &op.col, |t| match rows[i + t] {
                Some(r) => &plane[r * ow..(r + 1) * ow],
                None => &zeros[..],
            });
        });
        if let Some(v) = kept {
            SEPARABLE_TMP.with(|c| {
                if let Ok(mut slot) = c.try_borrow_mut() {
                    *slot = v;
                }
            });
        }
        Ok((
            candle_core::CpuStorage::F32(y),
            candle_core::Shape::from((b, c, oh, ow)),
        ))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        candle_core::CustomOp1::bwd(&self.0, arg, res, grad)
    }
}
