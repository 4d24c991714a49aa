//! The f32 backward pass on the CPU: input, weight and bias gradients from
//! `dz`, the gradient with respect to the pre-activation output.
//!
//! Every sum is taken in an order fixed by the shapes alone: parallel jobs
//! own disjoint outputs (an input plane, a block of weight-gradient entries,
//! a bias entry), images are accumulated one after the other, and each
//! `gemm` call has a shape that does not depend on the thread count. The
//! gradients are therefore bit-identical for any number of threads.

use rayon::prelude::*;

use super::cpu::{im2col_channel, matmul, SyncPtr};
use super::geom::Geom;
use super::math::simd;

/// Output pixels per `gemm` job in the input gradient.
const PIX_CHUNK: usize = 512;
/// Weight-gradient blocks: output channels x patch rows per job.
const CO_CHUNK: usize = 32;
const K_CHUNK: usize = 256;

/// `dx [b, cin, h, w]` from `dz [b, cout, oh, ow]` and `w`.
pub(super) fn input_grad(g: &Geom, dz: &[f32], w: &[f32]) -> Vec<f32> {
    let (p, hw, k) = (g.p(), g.hw(), g.k());
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
    // General: per image, dcol [groups][K, p] = W_g^T x dz, then scatter the
    // patch rows back into the input planes (col2im), one job per plane.
    let mut dcol = vec![0f32; g.groups * k * p];
    for b in 0..g.b {
        let dcp = SyncPtr(dcol.as_mut_ptr());
        (0..g.groups * chunks).into_par_iter().for_each(|job| {
            let (grp, c) = (job / chunks, job % chunks);
            let (p0, n) = (c * PIX_CHUNK, PIX_CHUNK.min(p - c * PIX_CHUNK));
            let dzg = &dz[(b * g.cout + grp * g.cout_g) * p + p0..];
            let wg = &w[grp * g.cout_g * k..];
            // SAFETY: job (grp, c) alone writes columns p0..p0 + n of the
            // group's panel.
            unsafe {
                matmul(
                    k,
                    n,
                    g.cout_g,
                    dcp.ptr().add(grp * k * p + p0),
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
    let (p, hw, k) = (g.p(), g.hw(), g.k());
    let mut dw = vec![0f32; g.cout * k];
    if g.is_depthwise() {
        let mult = g.cout / g.cin;
        dw.par_chunks_mut(k).enumerate().for_each(|(co, dwk)| {
            let ci = co / mult;
            for b in 0..g.b {
                let dzp = &dz[(b * g.cout + co) * p..][..p];
                let xp = &x[(b * g.cin + ci) * hw..][..hw];
                depthwise_weight_plane(g, dzp, xp, dwk);
            }
        });
        return dw;
    }
    // Jobs own a block of dW_g [cout_g, K]; dW_g += dz[b, group] x col^T.
    let (cb, kb) = (g.cout_g.div_ceil(CO_CHUNK), k.div_ceil(K_CHUNK));
    let jobs = g.groups * cb * kb;
    let pointwise = g.is_pointwise();
    let mut col = if pointwise {
        Vec::new()
    } else {
        vec![0f32; g.cin * g.kh * g.kw * p]
    };
    for b in 0..g.b {
        let xb = &x[b * g.cin * hw..(b + 1) * g.cin * hw];
        if !pointwise {
            let taps = g.kh * g.kw;
            col.par_chunks_mut(taps * p)
                .zip(xb.par_chunks(hw))
                .for_each(|(c, plane)| im2col_channel(g, plane, 0, p, c));
        }
        let dwp = SyncPtr(dw.as_mut_ptr());
        let col = &col;
        (0..jobs).into_par_iter().for_each(|job| {
            let grp = job / (cb * kb);
            let (c, kk) = ((job / kb) % cb, job % kb);
            let (c0, k0) = (c * CO_CHUNK, kk * K_CHUNK);
            let (m, n) = (CO_CHUNK.min(g.cout_g - c0), K_CHUNK.min(k - k0));
            let dzg = &dz[(b * g.cout + grp * g.cout_g + c0) * p..];
            // col^T [p, K]: element (q, r) at src[r * rs + q]
            let (src, rs) = if pointwise {
                (&xb[(grp * g.cin_g + k0) * hw..], hw)
            } else {
                (&col[(grp * k + k0) * p..], p)
            };
            // SAFETY: job (grp, c, kk) alone writes this block of dW.
            unsafe {
                matmul(
                    m,
                    n,
                    p,
                    dwp.ptr().add((grp * g.cout_g + c0) * k + k0),
                    k,
                    b > 0,
                    dzg.as_ptr(),
                    p,
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
