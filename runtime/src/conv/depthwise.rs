//! The depthwise convolution at horizontal stride 1 or 2 on a CPU with
//! AVX-512F (an undilated 3x3 kernel on one with AVX2: [`avx2`]): each
//! output plane computed from its input plane where it lies.
//!
//! The portable loop ([`super::cpu`]'s `depthwise_plane`) first copies
//! every input plane into a zero-padded buffer, so that each tap is a
//! plain load. In MobileNetV2 at batch 1 those copies were 11 % of the
//! network: the depthwise layers read planes that the 1x1 layer before
//! them has just written, mostly from L3, and the copy doubled that
//! traffic (and at stride 2 it split every row into its two phases). Here
//! each tap's 16 columns are one masked load from the input row itself
//! (at stride 2, two loads of 16 and a permute that takes the even
//! lanes): lanes whose column falls in the padding are masked off (read
//! as zero, never touched), and rows in the padding are skipped.
//! Blocks of [`ROWS`] output rows by 16 columns sum every tap in
//! registers; bias and activation are applied before one masked store
//! per row. An undilated 3x3 kernel at stride 1 or 2 (nearly every
//! depthwise layer) reads each input row's three shifted vectors once per
//! block and adds them into every output row that uses them; other kernels
//! load per output row and tap, with the kernel width a constant where it
//! is 3 or 5.

use std::arch::x86_64::*;

use super::cpu::lanes;
use super::geom::Geom;
use super::kernel::{fused, in_registers};
use super::math::epilogue;
use super::Epilogue;

/// Output rows per register block: independent sums enough to cover the
/// FMA's latency.
const ROWS: usize = 6;

mod avx2;

/// Whether [`plane`] computes `g`'s planes: horizontal stride 1 or 2 and a
/// kernel at most 16 wide with AVX-512F; without it, an undilated 3x3
/// kernel at stride 1 or 2 with AVX2 and FMA ([`avx2`]).
pub(super) fn applies(g: &Geom) -> bool {
    if crate::rnn_kernel::has_avx512() {
        (g.sw == 1 || g.sw == 2) && g.kw <= 16
    } else {
        avx2::applies(g)
    }
}

/// One output plane `out` (`oh x ow`): `act(bias + Σ wk[ky, kx] ·
/// x[oy sh + ky dh - pt, ox sw + kx dw - pl])`, zero outside `x` (`h x w`).
///
/// # Safety
/// [`applies`] holds; `x` holds `h · w` floats, `wk` `kh · kw`, and `out`
/// points at `oh · ow` writable floats.
pub(super) unsafe fn plane(g: &Geom, x: &[f32], wk: &[f32], ep: (Epilogue, f32), out: *mut f32) {
    if crate::rnn_kernel::has_avx512() {
        plane_avx512(g, x, wk, ep, out)
    } else {
        avx2::plane(g, x, wk, ep, out)
    }
}

/// [`plane`] on AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512(g: &Geom, x: &[f32], wk: &[f32], ep: (Epilogue, f32), out: *mut f32) {
    match (g.kh, g.kw, g.sh, g.dh, g.dw) {
        (3, 3, 1, 1, 1) => plane_3x3::<1, { ROWS + 2 }>(g, x, wk, ep, out),
        (3, 3, 2, 1, 1) => plane_3x3::<2, { 2 * ROWS + 1 }>(g, x, wk, ep, out),
        (_, 3, _, _, _) => plane_kw::<3>(g, x, wk, ep, out),
        (_, 5, _, _, _) => plane_kw::<5>(g, x, wk, ep, out),
        _ => plane_kw::<0>(g, x, wk, ep, out),
    }
}

/// [`plane`] for an undilated 3x3 kernel at vertical stride `SH`, reading
/// each input row once per block of [`ROWS`] output rows: its three
/// shifted vectors are loaded once and added, with each of the nine taps
/// kept in a register, into every output row that uses it (three at stride
/// 1). `IN` is the block's input rows, `(ROWS - 1) SH + 3`. Which output
/// row an input row feeds, for which kernel row, is known at compile time.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)]
unsafe fn plane_3x3<const SH: usize, const IN: usize>(
    g: &Geom,
    x: &[f32],
    wk: &[f32],
    (act, bias): (Epilogue, f32),
    out: *mut f32,
) {
    let (h, w) = (g.h as isize, g.w as isize);
    let in_regs = if fused(act) { act } else { Epilogue::None };
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mut tap = [[_mm512_setzero_ps(); 3]; 3];
    for ky in 0..3 {
        for kx in 0..3 {
            tap[ky][kx] = _mm512_set1_ps(wk[ky * 3 + kx]);
        }
    }
    for ox0 in (0..g.ow).step_by(16) {
        let store = lanes(0, g.ow as isize - ox0 as isize);
        let mut col = [0isize; 3];
        let mut mask = [(0u16, 0u16); 3];
        for kx in 0..3 {
            let c = (ox0 * g.sw + kx) as isize - g.pl as isize;
            col[kx] = c;
            mask[kx] = (lanes(-c, w - c), lanes(-c - 16, w - c - 16));
        }
        for oy0 in (0..g.oh).step_by(ROWS) {
            let rows = ROWS.min(g.oh - oy0);
            let mut acc = [_mm512_setzero_ps(); ROWS];
            for i in 0..IN {
                let iy = (oy0 * SH + i) as isize - g.pt as isize;
                if iy < 0 || iy >= h {
                    continue;
                }
                let row = x.as_ptr().wrapping_offset(iy * w);
                let mut v = [_mm512_setzero_ps(); 3];
                for kx in 0..3 {
                    // Only the masked-in lanes are read: columns inside
                    // row iy of `x`.
                    let at = row.wrapping_offset(col[kx]);
                    v[kx] = if g.sw == 1 {
                        _mm512_maskz_loadu_ps(mask[kx].0, at)
                    } else {
                        let lo = _mm512_maskz_loadu_ps(mask[kx].0, at);
                        let hi = _mm512_maskz_loadu_ps(mask[kx].1, at.wrapping_add(16));
                        _mm512_permutex2var_ps(lo, even, hi)
                    };
                }
                // Output row r reads input row r SH + ky.
                for ky in 0..3 {
                    if i < ky || (i - ky) % SH != 0 || (i - ky) / SH >= ROWS {
                        continue;
                    }
                    let r = (i - ky) / SH;
                    for kx in 0..3 {
                        acc[r] = _mm512_fmadd_ps(tap[ky][kx], v[kx], acc[r]);
                    }
                }
            }
            store_block(
                &acc,
                rows,
                (bias, in_regs),
                out.add(oy0 * g.ow + ox0),
                (g.ow, store),
            );
        }
    }
    if in_regs != act {
        epilogue(act, 0.0, std::slice::from_raw_parts_mut(out, g.oh * g.ow));
    }
}

/// [`plane`] for kernels `KW` wide (`0`: `g.kw`, known at run time only).
/// With `KW` known, the tap loops unroll without a bound test per tap (the
/// run-time bound left a compare and branch before every FMA: 0.17 ms for
/// MobileNetV2's 144-channel 56x56 layer alone, 6x its FMA time).
#[target_feature(enable = "avx512f")]
// Index loops over constant bounds, as in the matrix kernel: the
// accumulators stay in registers.
#[allow(clippy::needless_range_loop)]
unsafe fn plane_kw<const KW: usize>(
    g: &Geom,
    x: &[f32],
    wk: &[f32],
    (act, bias): (Epilogue, f32),
    out: *mut f32,
) {
    let kw = if KW > 0 { KW } else { g.kw };
    let (h, w) = (g.h as isize, g.w as isize);
    let in_regs = if fused(act) { act } else { Epilogue::None };
    // Lanes 0, 2, .., 30 of two vectors: stride 2's columns.
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    // Output rows whose every tap row lies inside `x`: their blocks skip
    // the per-row test.
    let first_inside = g.pt.div_ceil(g.sh);
    let last_inside = (g.h + g.pt)
        .checked_sub((g.kh - 1) * g.dh + 1)
        .map(|v| v / g.sh);
    for ox0 in (0..g.ow).step_by(16) {
        let store = lanes(0, g.ow as isize - ox0 as isize);
        // Per kernel column: its first input column and the lanes of the
        // one (stride 1) or two (stride 2: 32 columns, the even ones
        // taken) vectors that lie inside the row.
        let mut col = [0isize; 16];
        let mut mask = [(0u16, 0u16); 16];
        for kx in 0..kw {
            let c = (ox0 * g.sw + kx * g.dw) as isize - g.pl as isize;
            col[kx] = c;
            mask[kx] = (lanes(-c, w - c), lanes(-c - 16, w - c - 16));
        }
        for oy0 in (0..g.oh).step_by(ROWS) {
            let rows = ROWS.min(g.oh - oy0);
            let mut acc = [_mm512_setzero_ps(); ROWS];
            let inside = rows == ROWS
                && oy0 >= first_inside
                && last_inside.is_some_and(|l| oy0 + ROWS - 1 <= l);
            for ky in 0..g.kh {
                let taps = &wk[ky * kw..][..kw];
                // Each row's input row, or none (past the block's rows or
                // in the padding).
                let mut src = [None; ROWS];
                for r in 0..ROWS {
                    let iy = ((oy0 + r) * g.sh + ky * g.dh) as isize - g.pt as isize;
                    if inside || (r < rows && iy >= 0 && iy < h) {
                        src[r] = Some(x.as_ptr().wrapping_offset(iy * w));
                    }
                }
                for kx in 0..kw {
                    let tap = _mm512_set1_ps(taps[kx]);
                    for r in 0..ROWS {
                        let Some(row) = src[r] else { continue };
                        // Only the masked-in lanes are read: columns
                        // inside row iy of `x`.
                        let at = row.wrapping_offset(col[kx]);
                        let v = if g.sw == 1 {
                            _mm512_maskz_loadu_ps(mask[kx].0, at)
                        } else {
                            let lo = _mm512_maskz_loadu_ps(mask[kx].0, at);
                            let hi = _mm512_maskz_loadu_ps(mask[kx].1, at.wrapping_add(16));
                            _mm512_permutex2var_ps(lo, even, hi)
                        };
                        acc[r] = _mm512_fmadd_ps(tap, v, acc[r]);
                    }
                }
            }
            store_block(
                &acc,
                rows,
                (bias, in_regs),
                out.add(oy0 * g.ow + ox0),
                (g.ow, store),
            );
        }
    }
    if in_regs != act {
        epilogue(act, 0.0, std::slice::from_raw_parts_mut(out, g.oh * g.ow));
    }
}

/// A block's first `rows` sums, with the bias and the in-register
/// activation, stored one output row (`ow` floats apart) each under
/// `store`.
#[inline(always)]
unsafe fn store_block(
    acc: &[__m512; ROWS],
    rows: usize,
    (bias, act): (f32, Epilogue),
    out: *mut f32,
    (ow, store): (usize, u16),
) {
    for (r, &a) in acc.iter().enumerate().take(rows) {
        _mm512_mask_storeu_ps(out.add(r * ow), store, in_registers(a, bias, act));
    }
}
