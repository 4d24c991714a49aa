//! 2-D pooling with PyTorch's exact semantics: padding, stride, dilation,
//! `ceil_mode`, `count_include_pad`, and adaptive pooling to any output size
//! (larger than the input included).
//!
//! candle 0.11's own pooling has none of these options, and its max-pool
//! backward is wrong. Everything here is therefore built from plain candle
//! tensor ops (`cat`, `narrow`, `index_select`, `maximum`, `add`,
//! `broadcast_div`), which run on every device and are differentiable.
//!
//! The pooling is done one axis at a time (first W, then H): a maximum or a
//! sum over a rectangular window is a maximum or a sum over its columns of
//! the maximum or sum over its rows. Along one axis every output position has
//! a list of source positions (its window); window positions that fall in
//! the padding, or past the end of a shorter adaptive window, point at one
//! extra element appended to the axis that holds the padding value (`-inf`
//! for max, `0` for sums). For each offset `t` inside the windows, one
//! `index_select` (or a `narrow` when the picked positions are consecutive)
//! gathers the `t`-th element of every window, and the results are folded
//! with `maximum` or `add`. Averages are then divided by a precomputed
//! divisor tensor `[1, 1, oh, ow]`, exactly as PyTorch counts it.
//!
//! Fast paths: max pooling of f32 CPU data runs a direct kernel
//! ([`max_pool_planes`]: the window maxima along W, then along H, planes
//! split over the threads); with an autograd graph, as a custom op whose
//! backward routes each gradient to PyTorch's pick of the window's maximum
//! (`MaxPoolOp`). Otherwise, when the input
//! records no autograd graph (`!x.track_op()`), and candle's own
//! `max_pool2d_with_stride` / `avg_pool2d_with_stride` compute exactly
//! the same thing (no padding, no dilation, floor-sized output; adaptive
//! pooling whose output divides the input), those are used.
//! Inputs that track gradients take the custom op or the composed path, so
//! gradients never go through candle's pooling backward.

use candle_core::Tensor;

use crate::Result;

/// The options of a PyTorch `MaxPool2d` / `AvgPool2d`, per axis as
/// `(h, w)`.
///
/// Output size per axis (PyTorch's rule, see [`Pool2d::out_size`]):
/// `out = floor_or_ceil((in + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1`,
/// and with `ceil_mode` the last window is dropped if it would start at or
/// past `in + padding` (i.e. entirely in the right padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    /// Window size `(kh, kw)`; each at least 1.
    pub kernel: (usize, usize),
    /// Step between windows `(sh, sw)`; each at least 1.
    pub stride: (usize, usize),
    /// Implicit padding on both sides of each axis, `(pad_h, pad_w)`, as in
    /// PyTorch. Must be at most half the kernel on each axis (`p <= k / 2`).
    /// Max pooling pads with `-inf`, average pooling with zeros.
    pub padding: (usize, usize),
    /// Spacing between window elements `(dh, dw)`. Max pooling only; average
    /// pooling requires `(1, 1)`.
    pub dilation: (usize, usize),
    /// Round the output size up instead of down (PyTorch's `ceil_mode`).
    pub ceil_mode: bool,
    /// Average pooling only: count padded positions in the divisor
    /// (PyTorch's default, `true`).
    pub count_include_pad: bool,
}

impl Pool2d {
    /// The output spatial size `(oh, ow)` for an input of `h x w`, or `None`
    /// when the configuration yields no output (output size 0 on an axis, or
    /// a zero kernel, stride or dilation).
    ///
    /// Per axis, with `eff = dilation * (kernel - 1) + 1` (the dilated
    /// window's extent) and floor division on a possibly negative numerator:
    ///
    /// ```text
    /// out = (in + 2 * pad - eff + (ceil_mode ? stride - 1 : 0)) / stride + 1
    /// if ceil_mode && (out - 1) * stride >= in + pad { out -= 1 }
    /// ```
    ///
    /// The correction makes every window start inside the input or the left
    /// padding, as PyTorch does. This does not check that the padding is
    /// valid (`pad <= kernel / 2`); the pooling functions do.
    pub fn out_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let oh = axis_out_size(
            h,
            self.kernel.0,
            self.stride.0,
            self.padding.0,
            self.dilation.0,
            self.ceil_mode,
        )?;
        let ow = axis_out_size(
            w,
            self.kernel.1,
            self.stride.1,
            self.padding.1,
            self.dilation.1,
            self.ceil_mode,
        )?;
        Some((oh, ow))
    }

    /// Checks the configuration as PyTorch does and returns the output size.
    fn check(&self, op: &str, h: usize, w: usize) -> Result<(usize, usize)> {
        let (k, s, p, d) = (self.kernel, self.stride, self.padding, self.dilation);
        if k.0 == 0 || k.1 == 0 {
            return Err(msg(format!("{op}: kernel must be positive, got {k:?}")));
        }
        if s.0 == 0 || s.1 == 0 {
            return Err(msg(format!("{op}: stride must be positive, got {s:?}")));
        }
        if d.0 == 0 || d.1 == 0 {
            return Err(msg(format!("{op}: dilation must be positive, got {d:?}")));
        }
        if p.0 > k.0 / 2 || p.1 > k.1 / 2 {
            return Err(msg(format!(
                "{op}: padding {p:?} must be at most half the kernel {k:?} on each axis"
            )));
        }
        self.out_size(h, w).ok_or_else(|| {
            msg(format!(
                "{op}: input {h}x{w} gives no output with kernel {k:?}, stride {s:?}, \
                 padding {p:?}, dilation {d:?}, ceil_mode {}",
                self.ceil_mode
            ))
        })
    }

    /// Along `axis` (0 = H, 1 = W), the input positions of every window's
    /// elements; negative or `>= in` positions are padding.
    fn axis_windows(&self, axis: usize, out: usize) -> Vec<Vec<i64>> {
        let (k, s, p, d) = if axis == 0 {
            (
                self.kernel.0,
                self.stride.0,
                self.padding.0,
                self.dilation.0,
            )
        } else {
            (
                self.kernel.1,
                self.stride.1,
                self.padding.1,
                self.dilation.1,
            )
        };
        (0..out)
            .map(|o| {
                let start = (o * s) as i64 - p as i64;
                (0..k).map(|t| start + (t * d) as i64).collect()
            })
            .collect()
    }
}

/// PyTorch's `pooling_output_shape` for one axis; `None` for no output.
fn axis_out_size(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let (input, kernel, stride, pad, dilation) = (
        input as i64,
        kernel as i64,
        stride as i64,
        pad as i64,
        dilation as i64,
    );
    let eff = dilation * (kernel - 1) + 1;
    let num = input + 2 * pad - eff + if ceil_mode { stride - 1 } else { 0 };
    let mut out = num.div_euclid(stride) + 1;
    if ceil_mode && out >= 1 && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    usize::try_from(out).ok().filter(|&o| o > 0)
}

fn msg(s: String) -> crate::Error {
    candle_core::Error::Msg(s).into()
}

/// How the windows' elements are folded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fold {
    Max,
    Sum,
}

impl Fold {
    /// The value of positions outside the input.
    fn pad_value(self) -> f64 {
        match self {
            Fold::Max => f64::NEG_INFINITY,
            Fold::Sum => 0.0,
        }
    }
}

/// Folds `x` along `axis` over `windows`: output position `o` along the axis
/// is the max / sum of `x` at the positions `windows[o]`; positions outside
/// `0..n` count as the fold's padding value. The result is contiguous.
fn fold_axis(x: &Tensor, axis: usize, windows: &[Vec<i64>], fold: Fold) -> Result<Tensor> {
    let x = x.contiguous()?;
    let n = x.dim(axis)?;
    let kmax = windows.iter().map(Vec::len).max().unwrap_or(0);
    let inside = |p: i64| (0..n as i64).contains(&p);
    let needs_pad = windows
        .iter()
        .any(|w| w.len() < kmax || w.iter().any(|&p| !inside(p)));
    let src = if needs_pad {
        let mut shape = x.dims().to_vec();
        shape[axis] = 1;
        let pad = Tensor::full(fold.pad_value(), shape, x.device())?.to_dtype(x.dtype())?;
        Tensor::cat(&[&x, &pad], axis)?
    } else {
        x
    };
    let mut acc: Option<Tensor> = None;
    for t in 0..kmax {
        let idx: Vec<u32> = windows
            .iter()
            .map(|w| match w.get(t) {
                Some(&p) if inside(p) => p as u32,
                _ => n as u32,
            })
            .collect();
        let consecutive = idx.windows(2).all(|w| w[1] == w[0] + 1);
        let part = if consecutive {
            src.narrow(axis, idx[0] as usize, idx.len())?
        } else {
            let len = idx.len();
            src.index_select(&Tensor::from_vec(idx, len, src.device())?, axis)?
        };
        acc = Some(match (acc, fold) {
            (None, _) => part,
            (Some(a), Fold::Max) => a.maximum(&part)?,
            (Some(a), Fold::Sum) => (a + part)?,
        });
    }
    let acc = acc.ok_or_else(|| msg("pooling with an empty window".to_string()))?;
    Ok(acc.contiguous()?)
}

/// The `[1, 1, oh, ow]` tensor `dh[i] * dw[j]`, in `x`'s dtype and device.
fn divisor(x: &Tensor, dh: &[usize], dw: &[usize]) -> Result<Tensor> {
    let vals: Vec<f32> = dh
        .iter()
        .flat_map(|&a| dw.iter().map(move |&b| (a * b).max(1) as f32))
        .collect();
    let t = Tensor::from_vec(vals, (1, 1, dh.len(), dw.len()), x.device())?;
    Ok(t.to_dtype(x.dtype())?)
}

fn spatial(x: &Tensor) -> Result<(usize, usize)> {
    let (_, _, h, w) = x.dims4()?;
    Ok((h, w))
}

/// Whether candle's own pooling with `kernel`/`stride` gives exactly
/// `(oh, ow)` and `x` records no gradient graph.
fn candle_fast_path(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    out: (usize, usize),
) -> Result<bool> {
    let (h, w) = spatial(x)?;
    Ok(!x.track_op()
        && kernel.0 <= h
        && kernel.1 <= w
        && (h - kernel.0) / stride.0 + 1 == out.0
        && (w - kernel.1) / stride.1 + 1 == out.1)
}

/// PyTorch's `F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)`.
///
/// Shape: `[N, C, H, W] -> [N, C, oh, ow]` with `(oh, ow) = p.out_size(H, W)`
/// (see [`Pool2d::out_size`]). Padded positions count as `-inf`, so an input
/// of negative values only is pooled correctly. `count_include_pad` is
/// ignored.
///
/// Errors (never panics): input not rank 4, a zero kernel, stride or
/// dilation, padding above half the kernel, or no output.
pub fn max_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    let (h, w) = spatial(x)?;
    let (oh, ow) = p.check("max_pool2d", h, w)?;
    if x.dtype() == candle_core::DType::F32 && x.device().is_cpu() {
        let (b, c, _, _) = x.dims4()?;
        let (rows, cols) = (p.axis_windows(0, oh), p.axis_windows(1, ow));
        let x = x.contiguous()?;
        if x.track_op() {
            return Ok(x.apply_op1(MaxPoolOp { rows, cols })?);
        }
        if let Some(y) = crate::host::with_f32(&x, |xv| max_pool_planes(xv, (h, w), &rows, &cols)) {
            return Ok(Tensor::from_vec(y, (b, c, oh, ow), x.device())?);
        }
    }
    if p.padding == (0, 0)
        && p.dilation == (1, 1)
        && candle_fast_path(x, p.kernel, p.stride, (oh, ow))?
    {
        return Ok(x.max_pool2d_with_stride(p.kernel, p.stride)?);
    }
    let y = fold_axis(x, 3, &p.axis_windows(1, ow), Fold::Max)?;
    fold_axis(&y, 2, &p.axis_windows(0, oh), Fold::Max)
}

/// Max pooling of f32 CPU data that records gradients: the forward is
/// [`max_pool_planes`]; the backward gives each output's gradient to the
/// position of its window's maximum that PyTorch picks (the first in the
/// window's row-major order, or the last NaN where the window has one),
/// adding where windows overlap. Planes are split over the threads, each
/// summed in one order, so the gradient does not depend on their number.
struct MaxPoolOp {
    rows: Vec<Vec<i64>>,
    cols: Vec<Vec<i64>>,
}

impl candle_core::CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "netdsl-max-pool2d"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let x = crate::host::f32_slice("max_pool2d", storage, layout)?;
        let &[b, c, h, w] = layout.dims() else {
            candle_core::bail!("max_pool2d: expected [N, C, H, W], got {:?}", layout.dims());
        };
        let y = max_pool_planes(x, (h, w), &self.rows, &self.cols);
        let shape = candle_core::Shape::from((b, c, self.rows.len(), self.cols.len()));
        Ok((candle_core::CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        use rayon::prelude::*;
        let (_, _, h, w) = arg.dims4()?;
        let (oh, ow) = (self.rows.len(), self.cols.len());
        use crate::host::HostF32;
        let (xh, yh, gh) = (HostF32::of(arg)?, HostF32::of(res)?, HostF32::of(grad)?);
        let (x, y, g) = (xh.slice(), yh.slice(), gh.slice());
        let (rows, cols) = (clipped(&self.rows, h), clipped(&self.cols, w));
        let mut dx = vec![0f32; x.len()];
        crate::conv::on_pool(|_| {
            dx.par_chunks_mut((h * w).max(1))
                .zip(x.par_chunks((h * w).max(1)))
                .zip(
                    y.par_chunks((oh * ow).max(1))
                        .zip(g.par_chunks((oh * ow).max(1))),
                )
                .for_each(|((dxp, xp), (yp, gp))| {
                    for (oy, rw) in rows.iter().enumerate() {
                        for (ox, cw) in cols.iter().enumerate() {
                            let (m, gv) = (yp[oy * ow + ox], gp[oy * ow + ox]);
                            let mut at = None;
                            'scan: for &r in rw {
                                for &c in cw {
                                    let v = xp[r * w + c];
                                    if m.is_nan() {
                                        if v.is_nan() {
                                            at = Some(r * w + c);
                                        }
                                    } else if v == m {
                                        at = Some(r * w + c);
                                        break 'scan;
                                    }
                                }
                            }
                            if let Some(i) = at {
                                dxp[i] += gv;
                            }
                        }
                    }
                })
        });
        drop((xh, yh, gh));
        let dx = Tensor::from_vec(dx, arg.shape(), arg.device())?.to_dtype(arg.dtype())?;
        Ok(Some(dx))
    }
}

/// Column windows of `k` columns every `s` (undilated), the usual case:
/// windows `j0..j1`, those wholly inside the row, start at column
/// `first + s (j - j0)`; the max pooling's column pass takes them without
/// index lists, in one vectorised loop for the common sizes. The windows in
/// the padding, at most a few at each end, keep their index lists.
#[derive(Clone, Copy, Debug)]
struct Regular {
    k: usize,
    s: usize,
    first: usize,
    j0: usize,
    j1: usize,
}

impl Regular {
    /// `cols` are the windows' column positions, unclipped (negative or
    /// past `w` in the padding).
    fn of(cols: &[Vec<i64>], w: usize) -> Option<Regular> {
        let first = cols.first()?;
        let (k, c0) = (first.len(), *first.first()?);
        let s = match cols.get(1) {
            Some(next) => next.first()? - c0,
            None => 1,
        };
        let ok = s > 0
            && cols.iter().enumerate().all(|(j, win)| {
                win.len() == k
                    && win
                        .iter()
                        .enumerate()
                        .all(|(t, &c)| c == c0 + s * j as i64 + t as i64)
            });
        if !ok {
            return None;
        }
        let inside = |j: usize| {
            let a = c0 + s * j as i64;
            a >= 0 && a + k as i64 <= w as i64
        };
        let j0 = (0..cols.len()).find(|&j| inside(j))?;
        let j1 = (j0..cols.len()).find(|&j| !inside(j)).unwrap_or(cols.len());
        Some(Regular {
            k,
            s: s as usize,
            first: (c0 + s * j0 as i64) as usize,
            j0,
            j1,
        })
    }
}

/// Max pooling of every `h x w` plane of `x` without a gradient graph: the
/// maximum over each window's columns, then over its rows (exact, as a
/// maximum is), planes split over the threads. Window positions outside
/// the plane are padding (`-inf`); a NaN in a window is the result, as in
/// PyTorch.
fn max_pool_planes(
    x: &[f32],
    (h, w): (usize, usize),
    rows: &[Vec<i64>],
    cols: &[Vec<i64>],
) -> Vec<f32> {
    use rayon::prelude::*;
    let (oh, ow) = (rows.len(), cols.len());
    let regular = Regular::of(cols, w);
    let (rows, cols) = (clipped(rows, h), clipped(cols, w));
    let mut y = vec![0f32; (x.len() / (h * w).max(1)) * oh * ow];
    let planes = x.len() / (h * w).max(1);
    let taps = rows.iter().map(Vec::len).max().unwrap_or(0) + cols.first().map_or(0, Vec::len);
    let serial = crate::conv::min_len(planes * (h * w + oh * ow) * taps, planes);
    crate::conv::on_pool(|_| {
        y.par_chunks_mut((oh * ow).max(1))
            .zip(x.par_chunks((h * w).max(1)))
            .with_min_len(serial)
            .for_each_init(
                || vec![0f32; h * ow],
                |across, (out, plane)| max_plane(plane, w, regular, &cols, &rows, across, out),
            )
    });
    y
}

/// Each window's positions inside `0..n` (those outside are padding).
fn clipped(windows: &[Vec<i64>], n: usize) -> Vec<Vec<usize>> {
    windows
        .iter()
        .map(|win| {
            win.iter()
                .filter_map(|&p| usize::try_from(p).ok().filter(|&p| p < n))
                .collect()
        })
        .collect()
}

/// The larger of `m` and `v`, or `v` if it is NaN (PyTorch's max pooling
/// propagates NaN).
#[inline(always)]
fn max_nan(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}

crate::conv::math::simd! {
    /// One plane of max pooling: each input row's column windows into
    /// `across` (`h x ow`), then each output row the maximum of its
    /// window's rows there. One call per plane, so both passes are
    /// compiled for the vector unit (inside the pooling closure the row
    /// pass was a scalar loop, half of max pooling's time in LeNet-5 at
    /// batch 256; a call per row paid the dispatch per 14 floats).
    fn max_plane(
        plane: &[f32],
        w: usize,
        regular: Option<Regular>,
        cols: &[Vec<usize>],
        rows: &[Vec<usize>],
        across: &mut [f32],
        out: &mut [f32],
    ) {
        let ow = cols.len();
        column_pass(plane, w, regular, cols, across);
        // Every output written once from its window's rows: `*o = max(*o,
        // x)` compiled to a masked store (`vmaskmovps`, microcoded on AMD,
        // many times slower than a plain one). Windows of more than three
        // rows, which are rare, still take that path for the rows past the
        // third.
        let row = |r: usize| &across[r * ow..(r + 1) * ow];
        for (orow, win) in out.chunks_exact_mut(ow.max(1)).zip(rows) {
            match win[..] {
                [] => orow.fill(f32::NEG_INFINITY),
                [a] => orow.copy_from_slice(row(a)),
                [a, b] => {
                    for ((o, &x), &y) in orow.iter_mut().zip(row(a)).zip(row(b)) {
                        *o = max_nan(x, y);
                    }
                }
                [a, b, c, ref rest @ ..] => {
                    let three = orow.iter_mut().zip(row(a)).zip(row(b)).zip(row(c));
                    for (((o, &x), &y), &z) in three {
                        *o = max_nan(max_nan(x, y), z);
                    }
                    for &r in rest {
                        for (o, &v) in orow.iter_mut().zip(row(r)) {
                            *o = max_nan(*o, v);
                        }
                    }
                }
            }
        }
    }
}

/// The column pass of [`max_plane`]: each row's windows' maxima into
/// `across` (`h x ow`). What each row takes is decided once per plane: at
/// LeNet-5's 28-column rows, checks made per row cost 3 % of the network.
/// Where every window is inside the row (no padding), each row is one call;
/// else the windows in the padding take their index lists and those
/// inside one call. Inlined into [`max_plane`].
#[inline(always)]
fn column_pass(
    plane: &[f32],
    w: usize,
    regular: Option<Regular>,
    cols: &[Vec<usize>],
    across: &mut [f32],
) {
    let ow = cols.len();
    if ow == 0 || w == 0 {
        return;
    }
    let rows = plane.chunks_exact(w).zip(across.chunks_exact_mut(ow));
    let Some(reg) = regular else {
        for (line, across) in rows {
            for (o, win) in across.iter_mut().zip(cols) {
                *o = win
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &c| max_nan(m, line[c]));
            }
        }
        return;
    };
    let (j0, j1) = (reg.j0, reg.j1);
    let edges = j0 > 0 || j1 < ow;
    #[cfg(target_arch = "x86_64")]
    if reg.s == 2 && reg.k == 3 && crate::rnn_kernel::has_avx512() {
        for (line, across) in rows {
            if edges {
                edge_windows(line, cols, (j0, j1), across);
            }
            // SAFETY: the CPU has AVX-512F (checked above).
            unsafe { max_columns_s2(&line[reg.first..], 3, &mut across[j0..j1]) };
        }
        return;
    }
    if !edges {
        for (line, across) in rows {
            max_columns(line, reg.k, reg.s, across);
        }
        return;
    }
    for (line, across) in rows {
        edge_windows(line, cols, (j0, j1), across);
        max_columns(&line[reg.first..], reg.k, reg.s, &mut across[j0..j1]);
    }
}

/// The windows `0..j0` and `j1..` of a row (those reaching into the
/// padding), from their index lists.
#[inline(always)]
fn edge_windows(line: &[f32], cols: &[Vec<usize>], (j0, j1): (usize, usize), across: &mut [f32]) {
    for j in (0..j0).chain(j1..cols.len()) {
        across[j] = cols[j]
            .iter()
            .fold(f32::NEG_INFINITY, |m, &c| max_nan(m, line[c]));
    }
}

/// `out[j] = max(line[s j .. s j + k])` (NaN if one is), for windows
/// inside the line: 2x2 stride-2 windows as one vectorised loop over
/// pairs, others window by window. ([`column_pass`] runs 3-column
/// windows every 2 columns on [`max_columns_s2`] instead where it can.)
#[inline(always)]
fn max_columns(line: &[f32], k: usize, s: usize, out: &mut [f32]) {
    if k == 2 && s == 2 {
        for (o, pair) in out.iter_mut().zip(line.chunks_exact(2)) {
            *o = max_nan(pair[0], pair[1]);
        }
        return;
    }
    for (j, o) in out.iter_mut().enumerate() {
        let win = &line[s * j..s * j + k];
        *o = win[1..].iter().fold(win[0], |m, &v| max_nan(m, v));
    }
}

/// [`max_columns`] of 2- or 3-column windows every 2 columns, 16 outputs
/// at a time: two loads of 32 columns and permutes that take the even and
/// odd lanes (the compiler left this stride-2 loop scalar: ResNet's 3x3
/// stride-2 max pooling was 3 % of its network at batch 1).
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_columns_s2(line: &[f32], k: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let len = line.len() as isize;
    // `max_nan(m, v)` on 16 lanes: `v` where it is larger or NaN.
    let larger = |m: __m512, v: __m512| {
        let take =
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, m) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        _mm512_mask_blend_ps(take, m, v)
    };
    // Columns `at .. at + 32`, those past the line's end read as zero
    // (they feed only outputs past `out`'s end, which are not stored).
    let pair = |at: usize| {
        let at_i = at as isize;
        // SAFETY: the masks keep both loads inside `line`.
        unsafe {
            let a = _mm512_maskz_loadu_ps(
                crate::conv::lanes(0, len - at_i),
                line.as_ptr().wrapping_add(at),
            );
            let b = _mm512_maskz_loadu_ps(
                crate::conv::lanes(0, len - at_i - 16),
                line.as_ptr().wrapping_add(at + 16),
            );
            (a, b)
        }
    };
    for j0 in (0..out.len()).step_by(16) {
        let (a, b) = pair(2 * j0);
        let mut m = larger(
            _mm512_permutex2var_ps(a, even, b),
            _mm512_permutex2var_ps(a, odd, b),
        );
        if k == 3 {
            let (a, b) = pair(2 * j0 + 2);
            m = larger(m, _mm512_permutex2var_ps(a, even, b));
        }
        let store = crate::conv::lanes(0, (out.len() - j0) as isize);
        // SAFETY: the mask keeps the store inside `out`.
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(j0), store, m) };
    }
}

/// PyTorch's per-axis divisor factors for average pooling: for the window
/// starting at `start = o * s - pad`, `end = min(start + k, in + pad)`;
/// with `count_include_pad` the factor is `end - start`, otherwise the
/// number of real input positions `min(end, in) - max(start, 0)`.
fn avg_axis_divisors(
    input: usize,
    k: usize,
    s: usize,
    pad: usize,
    out: usize,
    include_pad: bool,
) -> Vec<usize> {
    let (input, k, s, pad) = (input as i64, k as i64, s as i64, pad as i64);
    (0..out as i64)
        .map(|o| {
            let start = o * s - pad;
            let end = (start + k).min(input + pad);
            let n = if include_pad {
                end - start
            } else {
                end.min(input) - start.max(0)
            };
            n.max(0) as usize
        })
        .collect()
}

/// PyTorch's `F.avg_pool2d(x, kernel, stride, padding, ceil_mode,
/// count_include_pad)` (no `divisor_override`).
///
/// Shape: `[N, C, H, W] -> [N, C, oh, ow]` with `(oh, ow) = p.out_size(H, W)`
/// (see [`Pool2d::out_size`]). Each output is the sum of the real input
/// elements in its window divided by, as PyTorch: with `count_include_pad`,
/// the window's size clipped to the padded extent `[-pad, in + pad)` (a
/// `ceil_mode` window overhanging the right padding counts less); without
/// it, the number of real input elements in the window.
///
/// Errors (never panics): input not rank 4, `dilation != (1, 1)`, a zero
/// kernel or stride, padding above half the kernel, or no output.
pub fn avg_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    let (h, w) = spatial(x)?;
    if p.dilation != (1, 1) {
        return Err(msg(format!(
            "avg_pool2d: dilation must be (1, 1), got {:?}",
            p.dilation
        )));
    }
    let (oh, ow) = p.check("avg_pool2d", h, w)?;
    if p.padding == (0, 0) && candle_fast_path(x, p.kernel, p.stride, (oh, ow))? {
        return Ok(x.avg_pool2d_with_stride(p.kernel, p.stride)?);
    }
    let y = fold_axis(x, 3, &p.axis_windows(1, ow), Fold::Sum)?;
    let y = fold_axis(&y, 2, &p.axis_windows(0, oh), Fold::Sum)?;
    let incl = p.count_include_pad;
    let dh = avg_axis_divisors(h, p.kernel.0, p.stride.0, p.padding.0, oh, incl);
    let dw = avg_axis_divisors(w, p.kernel.1, p.stride.1, p.padding.1, ow, incl);
    Ok(y.broadcast_div(&divisor(x, &dh, &dw)?)?)
}

/// Adaptive windows along one axis: output `i` covers input positions
/// `floor(i * n / out) .. ceil((i + 1) * n / out)`.
fn adaptive_windows(n: usize, out: usize) -> Vec<Vec<i64>> {
    (0..out)
        .map(|i| {
            let start = i * n / out;
            let end = ((i + 1) * n).div_ceil(out);
            (start as i64..end as i64).collect()
        })
        .collect()
}

fn adaptive(x: &Tensor, out: (usize, usize), fold: Fold, op: &str) -> Result<Tensor> {
    let (h, w) = spatial(x)?;
    let (oh, ow) = out;
    if oh == 0 || ow == 0 {
        return Err(msg(format!(
            "{op}: output size must be positive, got {out:?}"
        )));
    }
    if h == 0 || w == 0 {
        return Err(msg(format!("{op}: input spatial size {h}x{w} is empty")));
    }
    if h % oh == 0 && w % ow == 0 {
        let k = (h / oh, w / ow);
        if candle_fast_path(x, k, k, out)? {
            return Ok(match fold {
                Fold::Max => x.max_pool2d_with_stride(k, k)?,
                Fold::Sum => x.avg_pool2d_with_stride(k, k)?,
            });
        }
    }
    let wh = adaptive_windows(h, oh);
    let ww = adaptive_windows(w, ow);
    let y = fold_axis(x, 3, &ww, fold)?;
    let y = fold_axis(&y, 2, &wh, fold)?;
    match fold {
        Fold::Max => Ok(y),
        Fold::Sum => {
            let dh: Vec<usize> = wh.iter().map(Vec::len).collect();
            let dw: Vec<usize> = ww.iter().map(Vec::len).collect();
            Ok(y.broadcast_div(&divisor(x, &dh, &dw)?)?)
        }
    }
}

/// PyTorch's `F.adaptive_avg_pool2d(x, out)`.
///
/// Shape: `[N, C, H, W] -> [N, C, out.0, out.1]`, for any positive `out`,
/// smaller, equal or larger than the input (AlexNet's `5x5 -> 6x6`). Output
/// row `i` averages input rows `floor(i * H / oh) .. ceil((i + 1) * H / oh)`,
/// columns likewise.
///
/// Errors (never panics): input not rank 4, an empty input or a zero output
/// size.
pub fn adaptive_avg_pool2d(x: &Tensor, out: (usize, usize)) -> Result<Tensor> {
    adaptive(x, out, Fold::Sum, "adaptive_avg_pool2d")
}

/// PyTorch's `F.adaptive_max_pool2d(x, out)` (values only, no indices).
///
/// Shape: `[N, C, H, W] -> [N, C, out.0, out.1]`, windows as in
/// [`adaptive_avg_pool2d`], each reduced by its maximum.
///
/// Errors (never panics): input not rank 4, an empty input or a zero output
/// size.
pub fn adaptive_max_pool2d(x: &Tensor, out: (usize, usize)) -> Result<Tensor> {
    adaptive(x, out, Fold::Max, "adaptive_max_pool2d")
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The column pass of max pooling equals the window-by-window maximum
    /// for 2- and 3-column windows every 1 or 2 columns (the loops for the
    /// compiler to vectorise and, with AVX-512, `max_columns_s2`) and a
    /// 4-wide one (the general loop), at every output count up to 40 (whole vectors and tails),
    /// on lines just long enough or longer, with NaN in some windows.
    #[test]
    fn the_column_pass_takes_each_windows_maximum() {
        let line: Vec<f32> = (0..160)
            .map(|i| match i {
                37 | 90 => f32::NAN,
                _ => ((i * 7919) % 61) as f32 - 30.0,
            })
            .collect();
        for (k, s) in [(2, 2), (3, 2), (2, 1), (3, 1), (4, 3)] {
            for n in 0..40usize {
                for extra in [0, 1, 17] {
                    let len = (s * n + k).saturating_sub(s) + extra;
                    let mut outs = vec![vec![0.5f32; n + 3]];
                    max_columns(&line[..len], k, s, &mut outs[0][..n]);
                    #[cfg(target_arch = "x86_64")]
                    if s == 2 && k <= 3 && crate::rnn_kernel::has_avx512() {
                        let mut out = vec![0.5f32; n + 3];
                        // SAFETY: the CPU has AVX-512F.
                        unsafe { max_columns_s2(&line[..len], k, &mut out[..n]) };
                        outs.push(out);
                    }
                    for out in &outs {
                        for (j, &got) in out[..n].iter().enumerate() {
                            let win = &line[s * j..s * j + k];
                            let want = win[1..].iter().fold(win[0], |m, &v| max_nan(m, v));
                            assert!(
                                got == want || (got.is_nan() && want.is_nan()),
                                "k {k}, s {s}, n {n}, len {len}: output {j} is {got}, not {want}"
                            );
                        }
                        assert_eq!(
                            out[n..],
                            [0.5; 3],
                            "k {k}, s {s}, n {n}: written past the end"
                        );
                    }
                }
            }
        }
    }

    /// The direct kernel (no gradient graph) equals the maximum over each
    /// window computed from the definition, and the path of a variable's
    /// input, on negative values with padding, dilation and `ceil_mode`
    /// (both paths run `max_pool_planes`, so the definition is what checks
    /// it); and a NaN in a window is the window's result.
    #[test]
    fn direct_max_pool_equals_the_composed_path() {
        let dev = Device::Cpu;
        let whole = |kernel, stride| Pool2d {
            kernel,
            stride,
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
            count_include_pad: true,
        };
        // 37 columns: 18 outputs of a 3x3 stride-2 window, more than one
        // vector of 16.
        let x = (Tensor::randn(0f32, 1.0, (2, 3, 11, 37), &dev).unwrap() - 5.0).unwrap();
        let pools = [
            Pool2d {
                kernel: (3, 3),
                stride: (2, 2),
                padding: (1, 1),
                dilation: (1, 1),
                ceil_mode: false,
                count_include_pad: true,
            },
            Pool2d {
                kernel: (3, 2),
                stride: (2, 3),
                padding: (1, 1),
                dilation: (2, 1),
                ceil_mode: true,
                count_include_pad: true,
            },
            // Windows of whole columns (`max_columns`): 2x2 stride 2,
            // 3x3 stride 2, 2x3 stride (1, 3) and 5x4 stride 2 (windows of
            // more than three rows), no padding.
            whole((2, 2), (2, 2)),
            whole((3, 3), (2, 2)),
            whole((2, 3), (1, 3)),
            whole((5, 4), (2, 2)),
        ];
        let (h, w) = (11, 37);
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for p in pools {
            let direct = max_pool2d(&x, &p).unwrap();
            // Window by window from the definition: each output the
            // largest input its window covers.
            let (oh, ow) = p.check("test", h, w).unwrap();
            let (rows, cols) = (p.axis_windows(0, oh), p.axis_windows(1, ow));
            let mut want = Vec::new();
            for plane in xs.chunks_exact(h * w) {
                for rw in &rows {
                    for cw in &cols {
                        let mut m = f32::NEG_INFINITY;
                        for &r in rw.iter().filter(|&&r| (0..h as i64).contains(&r)) {
                            for &c in cw.iter().filter(|&&c| (0..w as i64).contains(&c)) {
                                m = max_nan(m, plane[r as usize * w + c as usize]);
                            }
                        }
                        want.push(m);
                    }
                }
            }
            let got = direct.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got, want, "{p:?}");
            let v = Var::from_tensor(&x).unwrap();
            let composed = max_pool2d(v.as_tensor(), &p).unwrap();
            let diff = (direct - composed.detach()).unwrap().abs().unwrap();
            assert_eq!(diff.max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        }
        let mut v = vec![1f32; 16];
        v[15] = f32::NAN;
        let x = Tensor::from_vec(v, (1, 1, 4, 4), &dev).unwrap();
        let y = max_pool2d(&x, &pools[0]).unwrap().flatten_all().unwrap();
        let y = y.to_vec1::<f32>().unwrap();
        assert!(y[3].is_nan() && y[..3] == [1.0; 3], "{y:?}");
        // The same through the 2x2 windows' loop: NaN in either column.
        let mut v = vec![1f32; 16];
        v[2] = f32::NAN;
        v[13] = f32::NAN;
        let x = Tensor::from_vec(v, (1, 1, 4, 4), &dev).unwrap();
        let y = max_pool2d(&x, &pools[2]).unwrap().flatten_all().unwrap();
        let y = y.to_vec1::<f32>().unwrap();
        assert!(
            y[1].is_nan() && y[2].is_nan() && y[0] == 1.0 && y[3] == 1.0,
            "{y:?}"
        );
    }
}
