//! [`super::plane`]'s undilated 3x3 kernel at stride 1 or 2 for CPUs with
//! AVX2 and FMA but not AVX-512 (nearly every depthwise layer: all of
//! MobileNetV2's): the same in-place reading, on 8-lane vectors. Lanes
//! whose column falls in the padding are masked off (`vmaskmovps` reads
//! nothing there, and cannot fault), rows in the padding are skipped; at
//! stride 2 the even columns of two vectors are taken by a shuffle and a
//! cross-lane permute. Blocks of [`ROWS`] output rows by 8 columns keep
//! their sums in registers, beside the three shifted vectors of the input
//! row being read (the nine taps are read from the stack as FMA operands).
//!
//! Against the portable loop, which first copies every input plane into a
//! zero-padded buffer: see `docs/performance.md` (MobileNetV2 b1 on a
//! 2-core AMD EPYC).

use std::arch::x86_64::*;

use super::super::geom::Geom;
use super::super::kernel::fused;
use super::super::math::epilogue;
use super::super::Epilogue;
use super::lanes;

/// Output rows per register block.
const ROWS: usize = 4;

/// Whether [`plane`] computes `g`'s planes: an undilated 3x3 kernel at
/// stride 1 or 2 on both axes, and AVX2 with FMA.
pub(super) fn applies(g: &Geom) -> bool {
    (g.kh, g.kw, g.dh, g.dw) == (3, 3, 1, 1)
        && g.sh == g.sw
        && (g.sw == 1 || g.sw == 2)
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
}

/// [`super::plane`] for the kernels of [`applies`].
///
/// # Safety
/// [`applies`] holds; `x` holds `h · w` floats, `wk` 9, and `out` points
/// at `oh · ow` writable floats.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn plane(g: &Geom, x: &[f32], wk: &[f32], ep: (Epilogue, f32), out: *mut f32) {
    if g.sh == 1 {
        plane_3x3::<1, { ROWS + 2 }>(g, x, wk, ep, out)
    } else {
        plane_3x3::<2, { 2 * ROWS + 1 }>(g, x, wk, ep, out)
    }
}

/// The `ymm` mask of the low 8 bits of `bits`.
#[inline(always)]
unsafe fn mask_of(bits: u16) -> __m256i {
    let lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    _mm256_cmpeq_epi32(
        _mm256_and_si256(_mm256_set1_epi32(i32::from(bits)), lane),
        lane,
    )
}

/// Each input row of a block read once: its three shifted vectors added,
/// with each tap, into every output row that uses it. `IN` is the block's
/// input rows, `(ROWS - 1) SH + 3`.
#[target_feature(enable = "avx2,fma")]
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
    let mut tap = [[_mm256_setzero_ps(); 3]; 3];
    for ky in 0..3 {
        for kx in 0..3 {
            tap[ky][kx] = _mm256_set1_ps(wk[ky * 3 + kx]);
        }
    }
    let bias_v = _mm256_set1_ps(bias);
    for ox0 in (0..g.ow).step_by(8) {
        let store = mask_of(lanes(0, g.ow as isize - ox0 as isize) & 0xff);
        let full = g.ow - ox0 >= 8;
        let mut col = [0isize; 3];
        let mut mask = [(_mm256_setzero_si256(), _mm256_setzero_si256()); 3];
        for kx in 0..3 {
            let c = (ox0 * SH + kx) as isize - g.pl as isize;
            col[kx] = c;
            mask[kx] = (
                mask_of(lanes(-c, w - c) & 0xff),
                mask_of(lanes(-c - 8, w - c - 8) & 0xff),
            );
        }
        for oy0 in (0..g.oh).step_by(ROWS) {
            let rows = ROWS.min(g.oh - oy0);
            let mut acc = [bias_v; ROWS];
            for i in 0..IN {
                let iy = (oy0 * SH + i) as isize - g.pt as isize;
                if iy < 0 || iy >= h {
                    continue;
                }
                let row = x.as_ptr().wrapping_offset(iy * w);
                let mut v = [_mm256_setzero_ps(); 3];
                for kx in 0..3 {
                    // Only the masked-in lanes are read: columns inside
                    // row iy of `x`.
                    let at = row.wrapping_offset(col[kx]);
                    v[kx] = if SH == 1 {
                        _mm256_maskload_ps(at, mask[kx].0)
                    } else {
                        let lo = _mm256_maskload_ps(at, mask[kx].0);
                        let hi = _mm256_maskload_ps(at.wrapping_add(8), mask[kx].1);
                        // [0 2 8 10 | 4 6 12 14], then its 64-bit pairs in
                        // the order 0, 2, 1, 3.
                        let pairs = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
                        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
                            pairs,
                        )))
                    };
                }
                // Output row r reads input row r SH + ky.
                for ky in 0..3 {
                    if i < ky || (i - ky) % SH != 0 || (i - ky) / SH >= ROWS {
                        continue;
                    }
                    let r = (i - ky) / SH;
                    for kx in 0..3 {
                        acc[r] = _mm256_fmadd_ps(tap[ky][kx], v[kx], acc[r]);
                    }
                }
            }
            for r in 0..rows {
                let z = activate(acc[r], in_regs);
                let o = out.add((oy0 + r) * g.ow + ox0);
                if full {
                    _mm256_storeu_ps(o, z);
                } else {
                    _mm256_maskstore_ps(o, store, z);
                }
            }
        }
    }
    if in_regs != act {
        epilogue(act, 0.0, std::slice::from_raw_parts_mut(out, g.oh * g.ow));
    }
}

/// `act(z)` for the activations [`fused`] lists; `z` for the others.
#[inline(always)]
unsafe fn activate(z: __m256, act: Epilogue) -> __m256 {
    let zero = _mm256_setzero_ps();
    match act {
        Epilogue::Relu => _mm256_max_ps(z, zero),
        Epilogue::Relu6 => _mm256_min_ps(_mm256_max_ps(z, zero), _mm256_set1_ps(6.0)),
        Epilogue::LeakyRelu(s) => {
            let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(z, zero);
            _mm256_blendv_ps(_mm256_mul_ps(z, _mm256_set1_ps(s)), z, pos)
        }
        _ => z,
    }
}
