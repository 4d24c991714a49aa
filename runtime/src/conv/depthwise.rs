//! The depthwise convolution at horizontal stride 1 or 2 on a CPU with
//! AVX-512F: each output plane computed from its input plane where it lies.
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
//! per row.

use std::arch::x86_64::*;

use super::cpu::lanes;
use super::geom::Geom;
use super::kernel::{fused, in_registers};
use super::math::epilogue;
use super::Epilogue;

/// Output rows per register block: independent sums enough to cover the
/// FMA's latency.
const ROWS: usize = 6;

/// Whether [`plane`] computes `g`'s planes: horizontal stride 1 or 2, a
/// kernel at most 16 wide, and AVX-512F.
pub(super) fn applies(g: &Geom) -> bool {
    (g.sw == 1 || g.sw == 2) && g.kw <= 16 && crate::rnn_kernel::has_avx512()
}

/// One output plane `out` (`oh x ow`): `act(bias + Σ wk[ky, kx] ·
/// x[oy sh + ky dh - pt, ox sw + kx dw - pl])`, zero outside `x` (`h x w`).
///
/// # Safety
/// The CPU has AVX-512F ([`applies`]); `x` holds `h · w` floats, `wk`
/// `kh · kw`, and `out` points at `oh · ow` writable floats.
#[target_feature(enable = "avx512f")]
// Index loops over constant bounds, as in the matrix kernel: the
// accumulators stay in registers.
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn plane(
    g: &Geom,
    x: &[f32],
    wk: &[f32],
    (act, bias): (Epilogue, f32),
    out: *mut f32,
) {
    let (h, w) = (g.h as isize, g.w as isize);
    let in_regs = if fused(act) { act } else { Epilogue::None };
    // Lanes 0, 2, .., 30 of two vectors: stride 2's columns.
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for ox0 in (0..g.ow).step_by(16) {
        let store = lanes(0, g.ow as isize - ox0 as isize);
        // Per kernel column: its first input column and the lanes of the
        // one (stride 1) or two (stride 2: 32 columns, the even ones
        // taken) vectors that lie inside the row.
        let mut col = [0isize; 16];
        let mut mask = [(0u16, 0u16); 16];
        for kx in 0..g.kw {
            let c = (ox0 * g.sw + kx * g.dw) as isize - g.pl as isize;
            col[kx] = c;
            mask[kx] = (lanes(-c, w - c), lanes(-c - 16, w - c - 16));
        }
        for oy0 in (0..g.oh).step_by(ROWS) {
            let rows = ROWS.min(g.oh - oy0);
            let mut acc = [_mm512_setzero_ps(); ROWS];
            for ky in 0..g.kh {
                let taps = &wk[ky * g.kw..][..g.kw];
                for r in 0..ROWS {
                    let iy = ((oy0 + r) * g.sh + ky * g.dh) as isize - g.pt as isize;
                    if r >= rows || iy < 0 || iy >= h {
                        continue;
                    }
                    let row = x.as_ptr().wrapping_offset(iy * w);
                    for kx in 0..g.kw {
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
                        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(taps[kx]), v, acc[r]);
                    }
                }
            }
            for r in 0..ROWS {
                if r < rows {
                    let z = in_registers(acc[r], bias, in_regs);
                    _mm512_mask_storeu_ps(out.add((oy0 + r) * g.ow + ox0), store, z);
                }
            }
        }
    }
    if in_regs != act {
        epilogue(act, 0.0, std::slice::from_raw_parts_mut(out, g.oh * g.ow));
    }
}
