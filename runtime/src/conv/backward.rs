//! The f32 backward pass on the CPU: input, weight and bias gradients from
//! `dz`, the gradient with respect to the pre-activation output.
//!
//! - The input gradient of a stride-1 convolution with at least 16 input
//!   channels per group is itself a convolution (of `dz` with the kernel
//!   flipped and its channel axes swapped), run on the forward's lowering,
//!   or Winograd's where it pays; any other is a product per image and a
//!   scatter of the patch rows back (col2im).
//! - The weight gradient of a 3x3 stride-1 convolution over enough tiles
//!   runs Winograd's F(4x4, 3x3) read the other way
//!   (`winograd::weight_grad`); any other multiplies `dz` by the patches of
//!   several images side by side, so that a small plane (7x7) still makes
//!   a product with a long inner dimension.
//!
//! Every sum is taken in an order fixed by the shapes alone: parallel jobs
//! own disjoint outputs (an input plane, a block of weight-gradient entries,
//! a bias entry), images are accumulated one after the other, and each
//! `gemm` call has a shape that does not depend on the thread count. The
//! gradients are therefore bit-identical for any number of threads.

use rayon::prelude::*;

use super::cpu::{im2col_rows, matmul, Padded, SyncPtr};
use super::geom::Geom;
use super::math::simd;
use super::Epilogue;

/// Output pixels per `gemm` job in the input gradient.
const PIX_CHUNK: usize = 512;
/// Patch rows per `gemm` job in the input gradient (several jobs per image
/// where an image has few pixels, as in ResNet's last stage).
const KD_CHUNK: usize = 256;
/// Input channels per group from which a stride-1 input gradient runs as a
/// convolution.
const AS_CONV_ROWS: usize = 16;
/// Weight-gradient blocks: output channels x patch rows per job.
const CO_CHUNK: usize = 64;
const K_CHUNK: usize = 256;
/// The weight gradient multiplies the patches of several images at once,
/// side by side, until a product's inner dimension has this many pixels
/// (a 7x7 image alone gave products of inner dimension 49, mostly packing).
const WG_PIXELS: usize = 2048;
/// Weight-gradient jobs per group wanted, for the row-block size.
const WG_JOBS: usize = 8;
/// The thread count the forward lowering sizes its tiles for when it
/// computes an input gradient: a constant, so that the gradient's sums do
/// not depend on the threads that run them.
const TILE_THREADS: usize = 4;

/// `dx [b, cin, h, w]` from `dz [b, cout, oh, ow]` and `w`.
pub(super) fn input_grad(g: &Geom, dz: &[f32], w: &[f32]) -> Vec<f32> {
    let (p, hw, k) = (g.p(), g.hw(), g.k());
    // The transposed convolution's products have `cin_g` rows: below
    // AS_CONV_ROWS the matrix kernel's 16-row tiles run mostly empty
    // (LeNet-5's second convolution, 6 input channels, took 3x the time of
    // the product per image and scatter back).
    if !g.is_depthwise() && !g.is_pointwise() && g.cin_g >= AS_CONV_ROWS {
        if let Some(t) = transposed(g) {
            return as_convolution(g, &t, dz, w);
        }
    }
    let mut dx = vec![0f32; g.b * g.cin * hw];
    if g.is_depthwise() {
        let mult = g.cout / g.cin;
        let taps = g.kh * g.kw;
        dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
            let (b, ci) = (plane / g.cin, plane % g.cin);
            for co in ci * mult..(ci + 1) * mult {
                let dzp = &dz[(b * g.cout + co) * p..][..p];
                depthwise_input_plane(g, dzp, &w[co * taps..][..taps], dxp);
            }
        });
        return dx;
    }
    let chunks = p.div_ceil(PIX_CHUNK);
    if g.is_pointwise() {
        // dx[b, group] = W_g^T [cin_g, cout_g] x dz[b, group] [cout_g, p]
        let dxp = SyncPtr(dx.as_mut_ptr());
        (0..g.b * g.groups * chunks)
            .into_par_iter()
            .for_each(|job| {
                let (bg, c) = (job / chunks, job % chunks);
                let (b, grp) = (bg / g.groups, bg % g.groups);
                let (p0, n) = (c * PIX_CHUNK, PIX_CHUNK.min(p - c * PIX_CHUNK));
                let dzg = &dz[(b * g.cout + grp * g.cout_g) * p + p0..];
                let wg = &w[grp * g.cout_g * g.cin_g..];
                // SAFETY: job (b, grp, c) alone writes columns p0..p0 + n of the
                // group's input planes of image b.
                unsafe {
                    matmul(
                        g.cin_g,
                        n,
                        g.cout_g,
                        dxp.ptr().add((b * g.cin + grp * g.cin_g) * hw + p0),
                        hw,
                        false,
                        wg.as_ptr(),
                        1,
                        g.cin_g,
                        dzg.as_ptr(),
                        p,
                        1,
                    );
                }
            });
        return dx;
    }
    // General (strided): per image, dcol [groups][K, p] = W_g^T x dz, then
    // scatter the patch rows back into the input planes (col2im), one job
    // per plane.
    let mut dcol = vec![0f32; g.groups * k * p];
    let kchunks = k.div_ceil(KD_CHUNK);
    for b in 0..g.b {
        let dcp = SyncPtr(dcol.as_mut_ptr());
        (0..g.groups * kchunks * chunks)
            .into_par_iter()
            .for_each(|job| {
                let (grp, r, c) = (
                    job / (kchunks * chunks),
                    (job / chunks) % kchunks,
                    job % chunks,
                );
                let (p0, n) = (c * PIX_CHUNK, PIX_CHUNK.min(p - c * PIX_CHUNK));
                let (k0, m) = (r * KD_CHUNK, KD_CHUNK.min(k - r * KD_CHUNK));
                let dzg = &dz[(b * g.cout + grp * g.cout_g) * p + p0..];
                let wg = &w[grp * g.cout_g * k + k0..];
                // SAFETY: job (grp, r, c) alone writes rows k0..k0 + m,
                // columns p0..p0 + n of the group's panel.
                unsafe {
                    matmul(
                        m,
                        n,
                        g.cout_g,
                        dcp.ptr().add((grp * k + k0) * p + p0),
                        p,
                        false,
                        wg.as_ptr(),
                        1,
                        k,
                        dzg.as_ptr(),
                        p,
                        1,
                    );
                }
            });
        let taps = g.kh * g.kw;
        dx[b * g.cin * hw..(b + 1) * g.cin * hw]
            .par_chunks_mut(hw)
            .zip(dcol.par_chunks(taps * p))
            .for_each(|(dxp, rows)| col2im_channel(g, rows, dxp));
    }
    dx
}

/// The convolution whose output is the input gradient of a stride-1 one:
/// over `dz`, with the kernel flipped and its channel axes swapped, padded
/// by `dilation (k - 1) - padding` on the top and left (the bottom and
/// right follow from the sizes). `None` for a strided convolution, or one
/// padded by more than its dilated kernel's reach.
fn transposed(g: &Geom) -> Option<Geom> {
    let (reach_h, reach_w) = (g.dh * (g.kh - 1), g.dw * (g.kw - 1));
    if g.sh != 1 || g.sw != 1 || g.pt > reach_h || g.pl > reach_w {
        return None;
    }
    Some(Geom {
        b: g.b,
        cin: g.cout,
        h: g.oh,
        w: g.ow,
        cout: g.cin,
        kh: g.kh,
        kw: g.kw,
        groups: g.groups,
        cin_g: g.cout_g,
        cout_g: g.cin_g,
        sh: 1,
        sw: 1,
        pt: reach_h - g.pt,
        pl: reach_w - g.pl,
        dh: g.dh,
        dw: g.dw,
        oh: g.h,
        ow: g.w,
    })
}

/// `dx` of a stride-1 convolution as the forward convolution `t`
/// ([`transposed`]) of `dz`: the forward's tiled lowering (or Winograd's
/// F(4x4, 3x3) where [`super::winograd::pays_per_call`]) instead of a
/// product per image and a scatter back.
fn as_convolution(g: &Geom, t: &Geom, dz: &[f32], w: &[f32]) -> Vec<f32> {
    let taps = g.kh * g.kw;
    // w' [cin, cout_g, kh, kw]: w'[grp, ci][co][y][x] = w[grp, co][ci][kh-1-y][kw-1-x].
    let mut wt = vec![0f32; g.cin * g.cout_g * taps];
    wt.par_chunks_mut(g.cout_g * taps)
        .enumerate()
        .for_each(|(c, out)| {
            let (grp, ci) = (c / g.cin_g, c % g.cin_g);
            for co in 0..g.cout_g {
                let src = &w[((grp * g.cout_g + co) * g.cin_g + ci) * taps..][..taps];
                for (d, s) in out[co * taps..][..taps].iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        });
    if super::winograd::pays_per_call(t) {
        return super::winograd::with_transformed(&wt, t.cout, t.cin, |u| {
            super::winograd::forward(t, dz, super::winograd::U::Raw(u), None, Epilogue::None)
        });
    }
    super::cpu::forward(t, dz, &wt, None, Epilogue::None, TILE_THREADS, None)
}

simd! {
    /// Adds the `kh * kw` patch rows of one input channel back into its plane.
    fn col2im_channel(g: &Geom, rows: &[f32], dxp: &mut [f32]) {
        let p = g.p();
        for ky in 0..g.kh {
            let (ylo, yhi) = g.rows(ky);
            for kx in 0..g.kw {
                let (a, b) = g.cols(kx);
                if a >= b {
                    continue;
                }
                let row = &rows[(ky * g.kw + kx) * p..][..p];
                let ix0 = a * g.sw + kx * g.dw - g.pl;
                for oy in ylo..yhi {
                    let iy = oy * g.sh + ky * g.dh - g.pt;
                    let src = &row[oy * g.ow + a..oy * g.ow + b];
                    let dst = &mut dxp[iy * g.w..(iy + 1) * g.w];
                    if g.sw == 1 {
                        for (d, &s) in dst[ix0..ix0 + (b - a)].iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (j, &s) in src.iter().enumerate() {
                            dst[ix0 + j * g.sw] += s;
                        }
                    }
                }
            }
        }
    }
}

simd! {
    /// `dx_plane += conv_transpose(dz_plane, w)` for one depthwise channel.
    fn depthwise_input_plane(g: &Geom, dzp: &[f32], wk: &[f32], dxp: &mut [f32]) {
        for ky in 0..g.kh {
            let (ylo, yhi) = g.rows(ky);
            for kx in 0..g.kw {
                let (a, b) = g.cols(kx);
                if a >= b {
                    continue;
                }
                let wv = wk[ky * g.kw + kx];
                let ix0 = a * g.sw + kx * g.dw - g.pl;
                for oy in ylo..yhi {
                    let iy = oy * g.sh + ky * g.dh - g.pt;
                    let src = &dzp[oy * g.ow + a..oy * g.ow + b];
                    let dst = &mut dxp[iy * g.w..(iy + 1) * g.w];
                    if g.sw == 1 {
                        for (d, &s) in dst[ix0..ix0 + (b - a)].iter_mut().zip(src) {
                            *d += wv * s;
                        }
                    } else {
                        for (j, &s) in src.iter().enumerate() {
                            dst[ix0 + j * g.sw] += wv * s;
                        }
                    }
                }
            }
        }
    }
}

/// `dw [cout, cin_g, kh, kw]` from `dz` and `x`.
pub(super) fn weight_grad(g: &Geom, dz: &[f32], x: &[f32]) -> Vec<f32> {
    if super::winograd::pays_for_weight_grad(g) {
        return super::winograd::weight_grad(g, dz, x);
    }
    let (p, hw, k) = (g.p(), g.hw(), g.k());
    let mut dw = vec![0f32; g.cout * k];
    if g.is_depthwise() {
        let mult = g.cout / g.cin;
        let rows_at_once = g.sw == 1 && g.dw == 1 && g.kw <= 8;
        let pad = Padded::new(g);
        dw.par_chunks_mut(k).enumerate().for_each(|(co, dwk)| {
            let ci = co / mult;
            let mut rows = Vec::new();
            for b in 0..g.b {
                let dzp = &dz[(b * g.cout + co) * p..][..p];
                let xp = &x[(b * g.cin + ci) * hw..][..hw];
                if rows_at_once {
                    depthwise_weight_rows(g, &pad, dzp, xp, dwk, &mut rows);
                } else {
                    depthwise_weight_plane(g, dzp, xp, dwk);
                }
            }
        });
        return dw;
    }
    // Jobs own a block of dW_g [cout_g, K]; dW_g += dz[images, group] x
    // col^T over the patches of `per` images side by side.
    // Patch rows per job: at most K_CHUNK, fewer where a group would
    // otherwise make fewer than WG_JOBS jobs (ResNet's stem, 64 x 147, was
    // one job on one thread). Shapes alone decide, so sums do not depend
    // on the thread count.
    let cb = g.cout_g.div_ceil(CO_CHUNK);
    let kc = k
        .div_ceil(WG_JOBS.div_ceil(cb))
        .next_multiple_of(16)
        .clamp(16, K_CHUNK);
    let kb = k.div_ceil(kc);
    let jobs = g.groups * cb * kb;
    let pointwise = g.is_pointwise();
    let per = WG_PIXELS.div_ceil(p).clamp(1, g.b);
    let taps = g.kh * g.kw;
    let mut col = Vec::new();
    let mut dzb = Vec::new();
    for b0 in (0..g.b).step_by(per) {
        let nb = per.min(g.b - b0);
        let cols = nb * p;
        // dz of these images as [cout, cols] (in place for one image).
        let (dzs, dz_rs) = if nb == 1 {
            (&dz[b0 * g.cout * p..(b0 + 1) * g.cout * p], p)
        } else {
            dzb.resize(g.cout * cols, 0.0);
            dzb.par_chunks_mut(cols).enumerate().for_each(|(co, row)| {
                for (i, r) in row.chunks_mut(p).enumerate() {
                    r.copy_from_slice(&dz[((b0 + i) * g.cout + co) * p..][..p]);
                }
            });
            (&dzb[..], cols)
        };
        // The patches [cin · kh · kw, cols], or for a 1x1 stride-1
        // convolution of one image, the input itself.
        let (src_all, rs) = if pointwise && nb == 1 {
            (&x[b0 * g.cin * hw..(b0 + 1) * g.cin * hw], hw)
        } else {
            col.resize(g.cin * taps * cols, 0.0);
            col.par_chunks_mut(taps * cols)
                .enumerate()
                .for_each(|(ci, c)| {
                    for i in 0..nb {
                        let plane = &x[((b0 + i) * g.cin + ci) * hw..][..hw];
                        im2col_rows(g, plane, 0, p, &mut c[i * p..], cols);
                    }
                });
            (&col[..], cols)
        };
        let dwp = SyncPtr(dw.as_mut_ptr());
        (0..jobs).into_par_iter().for_each(|job| {
            let grp = job / (cb * kb);
            let (c, kk) = ((job / kb) % cb, job % kb);
            let (c0, k0) = (c * CO_CHUNK, kk * kc);
            let (m, n) = (CO_CHUNK.min(g.cout_g - c0), kc.min(k - k0));
            let dzg = &dzs[(grp * g.cout_g + c0) * dz_rs..];
            // col^T [cols, K]: element (q, r) at src[r * rs + q]
            let src = &src_all[(grp * k + k0) * rs..];
            // SAFETY: job (grp, c, kk) alone writes this block of dW.
            unsafe {
                matmul(
                    m,
                    n,
                    cols,
                    dwp.ptr().add((grp * g.cout_g + c0) * k + k0),
                    k,
                    b0 > 0,
                    dzg.as_ptr(),
                    dz_rs,
                    1,
                    src.as_ptr(),
                    1,
                    rs,
                );
            }
        });
    }
    dw
}

simd! {
    /// `dwk[ky, kx] += sum_{oy, ox} dz[oy, ox] * x[iy, ix]` for one depthwise
    /// channel of one image.
    fn depthwise_weight_plane(g: &Geom, dzp: &[f32], xp: &[f32], dwk: &mut [f32]) {
        for ky in 0..g.kh {
            let (ylo, yhi) = g.rows(ky);
            for kx in 0..g.kw {
                let (a, b) = g.cols(kx);
                if a >= b {
                    continue;
                }
                let ix0 = a * g.sw + kx * g.dw - g.pl;
                let mut acc = [0f32; 8];
                for oy in ylo..yhi {
                    let iy = oy * g.sh + ky * g.dh - g.pt;
                    let d = &dzp[oy * g.ow + a..oy * g.ow + b];
                    let xr = &xp[iy * g.w..(iy + 1) * g.w];
                    if g.sw == 1 {
                        dot8(&mut acc, d, &xr[ix0..ix0 + (b - a)]);
                    } else {
                        for (j, &dv) in d.iter().enumerate() {
                            acc[j % 8] += dv * xr[ix0 + j * g.sw];
                        }
                    }
                }
                dwk[ky * g.kw + kx] += sum8(&acc);
            }
        }
    }
}

simd! {
    /// [`depthwise_weight_plane`] for stride 1 and dilation 1 along W and
    /// at most 8 kernel columns: each row of `dz` is loaded once for every
    /// kernel column, against the input plane as the forward lays it out
    /// ([`Padded`]: zero-padded, padded row `r` is input row `r - pt`,
    /// column `c` input column `c - pl`), 8 output columns at a time
    /// (LeNet-5's first layer made 25 dot products of 28 floats per row
    /// instead).
    fn depthwise_weight_rows(g: &Geom, pad: &Padded, dzp: &[f32], xp: &[f32], dwk: &mut [f32], rows: &mut Vec<f32>) {
        let ow8 = g.ow.next_multiple_of(8);
        // The padded rows reach column ow8 + kw - 1 (Padded rounds the
        // output to 16 columns).
        let len = pad.len;
        rows.resize(pad.size(g) + g.oh * ow8, 0.0);
        let (xpad, dpad) = rows.split_at_mut(pad.size(g));
        pad.fill(g, xp, xpad);
        for (oy, r) in dpad.chunks_exact_mut(ow8).enumerate() {
            r[..g.ow].copy_from_slice(&dzp[oy * g.ow..(oy + 1) * g.ow]);
            r[g.ow..].fill(0.0);
        }
        for ky in 0..g.kh {
            let (ylo, yhi) = g.rows(ky);
            let mut acc = [[0f32; 8]; 8];
            for oy in ylo..yhi {
                let r = oy * g.sh + ky * g.dh;
                let (xr, dr) = (&xpad[r * len..(r + 1) * len], &dpad[oy * ow8..(oy + 1) * ow8]);
                for j in (0..ow8).step_by(8) {
                    let d = &dr[j..j + 8];
                    for (kx, a) in acc.iter_mut().enumerate().take(g.kw) {
                        let xs = &xr[j + kx..j + kx + 8];
                        for l in 0..8 {
                            a[l] += d[l] * xs[l];
                        }
                    }
                }
            }
            for (kx, a) in acc.iter().enumerate().take(g.kw) {
                dwk[ky * g.kw + kx] += sum8(a);
            }
        }
    }
}

/// `acc[i % 8] += a[i] * b[i]`: eight independent lanes, a fixed order.
#[inline(always)]
fn dot8(acc: &mut [f32; 8], a: &[f32], b: &[f32]) {
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ar.iter().zip(br).enumerate() {
        acc[l] += x * y;
    }
}

#[inline(always)]
fn sum8(a: &[f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `db [cout]`: the sum of `dz` over images and pixels.
pub(super) fn bias_grad(g: &Geom, dz: &[f32]) -> Vec<f32> {
    let p = g.p();
    (0..g.cout)
        .into_par_iter()
        .map(|co| {
            let mut acc = [0f32; 8];
            for b in 0..g.b {
                let d = &dz[(b * g.cout + co) * p..][..p];
                let ones = [1f32; 8];
                for ch in d.chunks(8) {
                    dot8(&mut acc, ch, &ones[..ch.len()]);
                }
            }
            sum8(&acc)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::winograd::tests::data;
    use crate::conv::Conv2dSpec;

    /// `dx` and `dw` as the definition's sums, in f64.
    fn direct(g: &Geom, dz: &[f32], x: &[f32], w: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut dx = vec![0f64; g.b * g.cin * g.hw()];
        let mut dw = vec![0f64; g.cout * g.k()];
        for b in 0..g.b {
            for co in 0..g.cout {
                let grp = co / g.cout_g;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let d = f64::from(dz[((b * g.cout + co) * g.oh + oy) * g.ow + ox]);
                        for ci in 0..g.cin_g {
                            let c = grp * g.cin_g + ci;
                            for ky in 0..g.kh {
                                let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                                if iy < 0 || iy >= g.h as isize {
                                    continue;
                                }
                                for kx in 0..g.kw {
                                    let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
                                    if ix < 0 || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xi =
                                        ((b * g.cin + c) * g.h + iy as usize) * g.w + ix as usize;
                                    let wi = ((co * g.cin_g + ci) * g.kh + ky) * g.kw + kx;
                                    dx[xi] += d * f64::from(w[wi]);
                                    dw[wi] += d * f64::from(x[xi]);
                                }
                            }
                        }
                    }
                }
            }
        }
        (dx, dw)
    }

    fn assert_near(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(want)
            .fold(0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs()));
        assert!(
            err <= 2e-5 * scale,
            "{what}: max error {err} (scale {scale})"
        );
    }

    /// Both gradients equal the definition's sums on every path: the input
    /// gradient as a convolution (direct, and Winograd; grouped, dilated,
    /// asymmetric padding with the bottom beyond the kernel's reach), the
    /// strided products in several row blocks, padding beyond the reach,
    /// 1x1; the weight gradient by Winograd, over several images side by side and over
    /// planes of 2048 pixels or more one image at a time (a 1x1 read in
    /// place).
    #[test]
    fn gradients_equal_the_direct_sums() {
        type Case = (
            [usize; 4],
            [usize; 4],
            (usize, usize),
            ((usize, usize), (usize, usize)),
            (usize, usize),
            usize,
        );
        let cases: &[Case] = &[
            (
                [3, 40, 9, 10],
                [24, 40, 3, 3],
                (1, 1),
                ((1, 1), (1, 1)),
                (1, 1),
                1,
            ),
            (
                [2, 12, 11, 9],
                [8, 6, 3, 3],
                (1, 1),
                ((1, 1), (1, 1)),
                (1, 1),
                2,
            ),
            (
                [2, 5, 12, 13],
                [7, 5, 3, 3],
                (1, 1),
                ((2, 2), (2, 2)),
                (2, 2),
                1,
            ),
            (
                [2, 6, 10, 9],
                [4, 6, 3, 5],
                (1, 1),
                ((0, 3), (1, 0)),
                (1, 1),
                1,
            ),
            (
                [2, 30, 13, 14],
                [20, 30, 3, 3],
                (2, 2),
                ((1, 1), (1, 1)),
                (1, 1),
                1,
            ),
            (
                [1, 6, 9, 8],
                [5, 6, 1, 1],
                (1, 1),
                ((1, 1), (1, 1)),
                (1, 1),
                1,
            ),
            (
                [3, 3, 47, 46],
                [4, 3, 3, 3],
                (1, 1),
                ((1, 1), (1, 1)),
                (1, 1),
                1,
            ),
            (
                [2, 5, 46, 47],
                [3, 5, 1, 1],
                (1, 1),
                ((0, 0), (0, 0)),
                (1, 1),
                1,
            ),
            (
                [3, 70, 5, 6],
                [80, 70, 3, 3],
                (1, 1),
                ((1, 1), (1, 1)),
                (1, 1),
                1,
            ),
            (
                [2, 9, 40, 41],
                [10, 9, 3, 3],
                (1, 1),
                ((1, 1), (1, 1)),
                (1, 1),
                1,
            ),
            // Depthwise: LeNet-5's first layer (one input channel, 6 out,
            // 5x5), a channel multiplier of 2, a kernel wider than 8
            // columns (the plane-by-tap path), dilated rows.
            (
                [3, 1, 12, 13],
                [6, 1, 5, 5],
                (1, 1),
                ((2, 2), (2, 2)),
                (1, 1),
                1,
            ),
            (
                [2, 4, 9, 10],
                [8, 1, 3, 3],
                (1, 1),
                ((1, 1), (1, 1)),
                (1, 1),
                4,
            ),
            (
                [1, 2, 9, 12],
                [2, 1, 3, 9],
                (1, 1),
                ((1, 1), (4, 4)),
                (1, 1),
                2,
            ),
            (
                [2, 3, 11, 10],
                [3, 1, 3, 3],
                (1, 1),
                ((2, 2), (1, 0)),
                (2, 1),
                3,
            ),
            // 64 channels each way over 144 tiles: Winograd's weight
            // gradient in two blocks of tiles, summed.
            (
                [1, 64, 48, 48],
                [64, 64, 3, 3],
                (1, 1),
                ((1, 1), (1, 1)),
                (1, 1),
                1,
            ),
            // A stem: 147 patch rows for 8 channels, in 5 row blocks.
            (
                [2, 3, 30, 31],
                [8, 3, 7, 7],
                (2, 2),
                ((3, 3), (3, 3)),
                (1, 1),
                1,
            ),
            // With 16 input channels per group, as a convolution: grouped,
            // dilated, padded asymmetrically beyond the kernel's reach at
            // the bottom, and through Winograd.
            (
                [2, 32, 11, 9],
                [8, 16, 3, 3],
                (1, 1),
                ((1, 1), (1, 1)),
                (1, 1),
                2,
            ),
            (
                [2, 16, 12, 13],
                [7, 16, 3, 3],
                (1, 1),
                ((2, 2), (2, 2)),
                (2, 2),
                1,
            ),
            (
                [2, 16, 10, 9],
                [4, 16, 3, 5],
                (1, 1),
                ((0, 3), (1, 0)),
                (1, 1),
                1,
            ),
            (
                [2, 16, 40, 41],
                [10, 16, 3, 3],
                (1, 1),
                ((1, 1), (1, 1)),
                (1, 1),
                1,
            ),
        ];
        for (k, &(xs, ws, stride, padding, dilation, groups)) in cases.iter().enumerate() {
            let spec = Conv2dSpec {
                stride,
                padding,
                dilation,
                groups,
            };
            let g = Geom::new(&xs, &ws, None, &spec).unwrap();
            let x = data(xs.iter().product(), 3 * k as u32 + 1);
            let w = data(ws.iter().product(), 3 * k as u32 + 2);
            let dz = data(g.b * g.cout * g.p(), 3 * k as u32 + 3);
            let (dx, dw) = direct(&g, &dz, &x, &w);
            assert_near(&input_grad(&g, &dz, &w), &dx, &format!("case {k}: dx"));
            assert_near(&weight_grad(&g, &dz, &x), &dw, &format!("case {k}: dw"));
        }
    }
}
