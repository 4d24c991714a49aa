//! The recurrent product of the fused inference path, `gates[b, j] (+)=
//! Σ_k h[b, k] W_hh[j, k]`, for every step of a recurrent layer: a small
//! multiply (`[B, H] x [H, G·H]`, 32 x 256 x 1024 in the benchmark) done
//! once per step, where a general matrix multiply spends much of its time
//! packing and dispatching. `W_hh` is packed once per call into panels of
//! 16 gate columns (`k` rows of 16 consecutive floats, 16 KB for `H` =
//! 256, so a panel stays in L1 while every row of the batch passes over
//! it), and an AVX2 FMA kernel keeps a tile of up to 6 batch rows x 16
//! columns in registers. The panels are split between threads; each writes
//! its own columns.

use rayon::prelude::*;

/// Gate columns per panel: two AVX2 vectors.
const PANEL: usize = 16;
/// Batch rows per register tile: 6 x 2 accumulators, 2 weight vectors and
/// a broadcast fill 15 of the 16 `ymm` registers.
const ROWS: usize = 6;

/// `W_hh` (`[cols, k]` row-major) in panels of [`PANEL`] columns: panel
/// `p` holds, for each `kk < k`, `W[p * 16 + c, kk]` for `c < 16` (zero
/// past `cols`).
pub(crate) struct Packed {
    data: Vec<f32>,
    cols: usize,
    k: usize,
}

impl Packed {
    pub(crate) fn new(w: &[f32], cols: usize, k: usize) -> Packed {
        let panels = cols.div_ceil(PANEL);
        let mut data = vec![0.0f32; panels * k * PANEL];
        for (j, row) in w.chunks_exact(k.max(1)).enumerate().take(cols) {
            let (p, c) = (j / PANEL, j % PANEL);
            let panel = &mut data[p * k * PANEL..(p + 1) * k * PANEL];
            for (kk, &v) in row.iter().enumerate() {
                panel[kk * PANEL + c] = v;
            }
        }
        Packed { data, cols, k }
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * PANEL..(p + 1) * self.k * PANEL]
    }
}

/// A pointer shared by the threads that write disjoint columns of `dst`.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: each thread writes only the columns of its own panels (see
// `recurrent`), so no element is written by two threads.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer (a method, so that a closure captures the whole
    /// `Shared`, which is `Sync`, not its raw pointer field).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `dst[b, j] (+)= Σ_k h[b, k] W[j, k]` for `b < batch`, `j < w.cols`:
/// `dst` rows of `w.cols` floats, `h` rows of `w.k`; `acc` adds to `dst`,
/// otherwise overwrites it.
pub(crate) fn recurrent(dst: &mut [f32], acc: bool, h: &[f32], batch: usize, w: &Packed) {
    let (cols, k) = (w.cols, w.k);
    if batch == 0 || cols == 0 || dst.len() < batch * cols || h.len() < batch * k {
        return;
    }
    if k == 0 {
        if !acc {
            dst[..batch * cols].fill(0.0);
        }
        return;
    }
    let panels = cols.div_ceil(PANEL);
    let threads = if batch * cols * k >= 1 << 18 {
        rayon::current_num_threads().min(panels)
    } else {
        1
    };
    let out = Shared(dst.as_mut_ptr());
    let run = |range: std::ops::Range<usize>| {
        for p in range {
            let width = PANEL.min(cols - p * PANEL);
            for b0 in (0..batch).step_by(ROWS) {
                let rows = ROWS.min(batch - b0);
                // SAFETY: rows b0..b0 + rows of `dst` and `h` exist (checked
                // above), columns p * 16 .. p * 16 + width of `dst` too; this
                // call writes only those, and no other panel range holds p.
                unsafe {
                    tile(
                        out.at(b0 * cols + p * PANEL),
                        cols,
                        acc,
                        h.as_ptr().add(b0 * k),
                        k,
                        w.panel(p),
                        rows,
                        width,
                    )
                };
            }
        }
    };
    if threads <= 1 {
        run(0..panels);
    } else {
        let per = panels.div_ceil(threads);
        (0..threads)
            .into_par_iter()
            .for_each(|t| run(t * per..((t + 1) * per).min(panels)));
    }
}

/// One tile: `rows` (<= 6) batch rows by `width` (<= 16) columns.
///
/// # Safety
/// `dst` points at `rows` rows of `width` floats, `dst_stride` apart; `h`
/// at `rows` rows of `panel.len() / 16` floats, `h_stride` apart.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    dst: *mut f32,
    dst_stride: usize,
    acc: bool,
    h: *const f32,
    h_stride: usize,
    panel: &[f32],
    rows: usize,
    width: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above); the
            // pointers are as the caller promises.
            unsafe { tile_avx2(dst, dst_stride, acc, h, h_stride, panel, rows, width) };
            return;
        }
    }
    // SAFETY: as the caller promises.
    unsafe { tile_plain(dst, dst_stride, acc, h, h_stride, panel, rows, width) }
}

/// The tile in plain Rust, for CPUs without AVX2 and FMA.
///
/// # Safety
/// As [`tile`].
#[allow(clippy::too_many_arguments)]
unsafe fn tile_plain(
    dst: *mut f32,
    dst_stride: usize,
    acc: bool,
    h: *const f32,
    h_stride: usize,
    panel: &[f32],
    rows: usize,
    width: usize,
) {
    let k = panel.len() / PANEL;
    for r in 0..rows {
        let mut sum = [0.0f32; PANEL];
        for kk in 0..k {
            // SAFETY: row r of `h` has k floats.
            let hv = unsafe { *h.add(r * h_stride + kk) };
            for (s, &wv) in sum.iter_mut().zip(&panel[kk * PANEL..(kk + 1) * PANEL]) {
                *s += hv * wv;
            }
        }
        for (c, &s) in sum.iter().enumerate().take(width) {
            // SAFETY: row r of `dst` has `width` floats.
            unsafe {
                let d = dst.add(r * dst_stride + c);
                *d = if acc { *d + s } else { s };
            }
        }
    }
}

/// The tile with AVX2 FMA: 6 x 16 accumulators in registers over `k`.
///
/// # Safety
/// As [`tile`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx2(
    dst: *mut f32,
    dst_stride: usize,
    acc: bool,
    h: *const f32,
    h_stride: usize,
    panel: &[f32],
    rows: usize,
    width: usize,
) {
    use std::arch::x86_64::*;
    let k = panel.len() / PANEL;
    let w = panel.as_ptr();
    // Partial tiles go through a full-size buffer.
    let mut buf = [[0.0f32; PANEL]; ROWS];
    // SAFETY (for the whole body): `w` has k * 16 floats; rows < `rows` of
    // `h` have k floats and of `dst` `width` floats (the caller's promise);
    // `buf` is 6 x 16.
    unsafe {
        let mut a = [[_mm256_setzero_ps(); 2]; ROWS];
        if acc {
            for r in 0..rows {
                if width == PANEL {
                    a[r][0] = _mm256_loadu_ps(dst.add(r * dst_stride));
                    a[r][1] = _mm256_loadu_ps(dst.add(r * dst_stride + 8));
                } else {
                    std::ptr::copy_nonoverlapping(
                        dst.add(r * dst_stride),
                        buf[r].as_mut_ptr(),
                        width,
                    );
                    a[r][0] = _mm256_loadu_ps(buf[r].as_ptr());
                    a[r][1] = _mm256_loadu_ps(buf[r].as_ptr().add(8));
                }
            }
        }
        macro_rules! rows_loop {
            ($n:literal) => {{
                for kk in 0..k {
                    let w0 = _mm256_loadu_ps(w.add(kk * PANEL));
                    let w1 = _mm256_loadu_ps(w.add(kk * PANEL + 8));
                    for r in 0..$n {
                        let hv = _mm256_broadcast_ss(&*h.add(r * h_stride + kk));
                        a[r][0] = _mm256_fmadd_ps(hv, w0, a[r][0]);
                        a[r][1] = _mm256_fmadd_ps(hv, w1, a[r][1]);
                    }
                }
            }};
        }
        match rows {
            6 => rows_loop!(6),
            5 => rows_loop!(5),
            4 => rows_loop!(4),
            3 => rows_loop!(3),
            2 => rows_loop!(2),
            _ => rows_loop!(1),
        }
        for r in 0..rows {
            if width == PANEL {
                _mm256_storeu_ps(dst.add(r * dst_stride), a[r][0]);
                _mm256_storeu_ps(dst.add(r * dst_stride + 8), a[r][1]);
            } else {
                _mm256_storeu_ps(buf[r].as_mut_ptr(), a[r][0]);
                _mm256_storeu_ps(buf[r].as_mut_ptr().add(8), a[r][1]);
                std::ptr::copy_nonoverlapping(buf[r].as_ptr(), dst.add(r * dst_stride), width);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable tile (for CPUs without AVX2 and FMA) against the
    /// definition, on a partial tile.
    #[test]
    fn plain_tile_equals_the_definition() {
        let (rows, width, k) = (5, 11, 9);
        let w: Vec<f32> = (0..width * k).map(|i| (i % 13) as f32 - 6.0).collect();
        let h: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let packed = Packed::new(&w, width, k);
        let mut dst = vec![1.0f32; rows * width];
        // SAFETY: dst has `rows` rows of `width`, h `rows` rows of k.
        unsafe {
            tile_plain(
                dst.as_mut_ptr(),
                width,
                true,
                h.as_ptr(),
                k,
                packed.panel(0),
                rows,
                width,
            )
        };
        for r in 0..rows {
            for j in 0..width {
                let dot: f32 = (0..k).map(|kk| h[r * k + kk] * w[j * k + kk]).sum();
                assert_eq!(dst[r * width + j], 1.0 + dot);
            }
        }
    }

    /// Against the plain triple loop, for sizes that leave partial panels
    /// and partial row tiles, accumulating and not, one thread and several.
    #[test]
    fn recurrent_product_equals_the_definition() {
        for &(batch, cols, k) in &[
            (1, 1, 1),
            (5, 20, 7),
            (7, 33, 13),
            (32, 1024, 256),
            (13, 48, 0),
        ] {
            let w: Vec<f32> = (0..cols * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let h: Vec<f32> = (0..batch * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            let init: Vec<f32> = (0..batch * cols).map(|i| (i % 7) as f32).collect();
            let packed = Packed::new(&w, cols, k);
            for acc in [false, true] {
                let mut got = init.clone();
                recurrent(&mut got, acc, &h, batch, &packed);
                for b in 0..batch {
                    for j in 0..cols {
                        let dot: f32 = (0..k).map(|kk| h[b * k + kk] * w[j * k + kk]).sum();
                        let want = if acc { init[b * cols + j] + dot } else { dot };
                        let g = got[b * cols + j];
                        assert!(
                            (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "batch {batch} cols {cols} k {k} acc {acc}: [{b}, {j}] {g} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
