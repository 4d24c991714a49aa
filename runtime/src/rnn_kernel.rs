//! The packed product `dst[b, j] (+)= Σ_k h[b, k] W[j, k]` of inference:
//! each step's recurrent product and the input projection of a recurrent
//! layer, and [`crate::linear`] from 512 rows. Made for the recurrent
//! product `gates[b, j] (+)= Σ_k h[b, k] W_hh[j, k]` of every step: a small
//! multiply (`[B, H] x [H, G·H]`, 32 x 256 x 1024 in the benchmark) done
//! once per step, where a general matrix multiply spends much of its time
//! packing and dispatching. `W_hh` is packed once per call into panels of
//! 16 gate columns (`k` rows of 16 consecutive floats, 16 KB for `H` =
//! 256, so a panel stays in L1 while every row of the batch passes over
//! it), and an AVX2 FMA kernel keeps a tile of up to 6 batch rows x 16
//! columns in registers; with AVX-512, panels of 32 columns and tiles of
//! 8 rows x 32 columns (16 of the 32 `zmm` registers). The panels are
//! split between threads; each writes its own columns.

use rayon::prelude::*;

use crate::conv::Epilogue;

/// Gate columns per panel: two AVX2 vectors.
const PANEL: usize = 16;
/// Batch rows per register tile: 6 x 2 accumulators, 2 weight vectors and
/// a broadcast fill 15 of the 16 `ymm` registers.
const ROWS: usize = 6;

/// With AVX-512: two `zmm` vectors per panel row, 8 batch rows per tile.
const PANEL_512: usize = 32;
const ROWS_512: usize = 8;

/// Whether the AVX-512 tile runs: the CPU has AVX-512F and the
/// environment variable `NETDSL_NO_AVX512` is not set (CI sets it to run
/// the parity tests on the AVX2 tile too, on machines that all have
/// AVX-512). Read once per process.
pub(crate) fn has_avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        if std::env::var_os("NETDSL_NO_AVX512").is_some() {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `W_hh` (`[cols, k]` row-major) in panels of `width` columns (16, or 32
/// with AVX-512): panel `p` holds, for each `kk < k`, `W[p * width + c,
/// kk]` for `c < width` (zero past `cols`).
pub struct Packed {
    data: Vec<f32>,
    cols: usize,
    k: usize,
    width: usize,
}

impl Packed {
    pub fn new(w: &[f32], cols: usize, k: usize) -> Packed {
        Packed::with_width(w, cols, k, if has_avx512() { PANEL_512 } else { PANEL })
    }

    /// The packing of `Wᵀ` given as `v` (`[k, cols]` row-major, so
    /// `W[j, kk] = v[kk, j]`): the product `h · v`, attention's `P · V`.
    /// A panel's rows are then slices of `v`'s rows, copied as they are.
    pub(crate) fn from_columns(v: &[f32], cols: usize, k: usize) -> Packed {
        let width = if has_avx512() { PANEL_512 } else { PANEL };
        let panels = cols.div_ceil(width);
        let mut data = vec![0.0f32; panels * k * width];
        for (kk, row) in v.chunks_exact(cols.max(1)).enumerate().take(k) {
            for p in 0..panels {
                let (c0, n) = (p * width, width.min(cols - p * width));
                data[(p * k + kk) * width..][..n].copy_from_slice(&row[c0..c0 + n]);
            }
        }
        Packed {
            data,
            cols,
            k,
            width,
        }
    }

    fn with_width(w: &[f32], cols: usize, k: usize, width: usize) -> Packed {
        let mut data = vec![0.0f32; cols.div_ceil(width) * k * width];
        pack_panels(w, cols, k, width, &mut data);
        Packed {
            data,
            cols,
            k,
            width,
        }
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * self.width..(p + 1) * self.k * self.width]
    }
}

/// `w` (`[cols, k]` row-major) into `data` as panels of `width` rows of
/// `w`: panel `p` holds, for each `kk < k`, `w[p * width + c, kk]` for
/// `c < width` (`data` zeroed, `cols.div_ceil(width) * k * width` floats;
/// the places past `cols` are left as they are). The layout of [`Packed`],
/// and of the convolutions' packed weights with `width` 8.
pub(crate) fn pack_panels(w: &[f32], cols: usize, k: usize, width: usize, data: &mut [f32]) {
    for (j, row) in w.chunks_exact(k.max(1)).enumerate().take(cols) {
        let (p, c) = (j / width, j % width);
        let panel = &mut data[p * k * width..(p + 1) * k * width];
        for (kk, &v) in row.iter().enumerate() {
            panel[kk * width + c] = v;
        }
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
pub fn recurrent(dst: &mut [f32], acc: bool, h: &[f32], batch: usize, w: &Packed) {
    add_or_write(dst, acc, h, batch, w, true);
}

/// [`recurrent`], on the thread pool when `parallel`.
fn add_or_write(dst: &mut [f32], acc: bool, h: &[f32], batch: usize, w: &Packed, parallel: bool) {
    let start = if acc { Start::Dst } else { Start::Zero };
    let len = dst.len();
    product(
        dst.as_mut_ptr(),
        len,
        start,
        h,
        batch,
        w,
        parallel,
        Epilogue::None,
    );
}

/// `dst[b, j] = act(bias[j] + Σ_k h[b, k] W[j, k])` (no bias: 0), into
/// `dst` as it may be, uninitialised: the accumulators start from the bias
/// row in registers (no pass writing the bias into `dst` and reading it
/// back), and `act` is applied to each output tile right after it is
/// computed, while it is in cache. Returns whether it wrote the `batch`
/// rows (`false`, leaving `dst` as it was, when a slice is too short).
pub(crate) fn product_into(
    dst: &mut [std::mem::MaybeUninit<f32>],
    bias: Option<&[f32]>,
    h: &[f32],
    batch: usize,
    w: &Packed,
    act: Epilogue,
) -> bool {
    let start = match bias {
        Some(b) if b.len() < w.cols => return false,
        Some(b) => Start::Row(b),
        None => Start::Zero,
    };
    if dst.len() < batch * w.cols || h.len() < batch * w.k {
        return false;
    }
    product(
        dst.as_mut_ptr().cast(),
        dst.len(),
        start,
        h,
        batch,
        w,
        true,
        act,
    );
    true
}

/// [`recurrent`] on the calling thread alone: for a caller that splits the
/// work between its own threads (the recurrent layers' step loop).
pub(crate) fn recurrent_serial(dst: &mut [f32], acc: bool, h: &[f32], batch: usize, w: &Packed) {
    add_or_write(dst, acc, h, batch, w, false);
}

/// Where the product's accumulators start.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// At zero: `dst` is overwritten, and may be uninitialised.
    Zero,
    /// At `dst`'s values: the product is added to them.
    Dst,
    /// At one row of `w.cols` values (a bias), the same for every row:
    /// `dst` is overwritten, and may be uninitialised.
    Row(&'a [f32]),
}

/// A tile's start: [`Start`] with the row at the panel's first column.
#[derive(Clone, Copy)]
enum TileStart {
    Zero,
    Dst,
    Row(*const f32),
}

/// `dst` (`dst_len` floats, initialised unless `start` overwrites) as in
/// [`recurrent`].
#[allow(clippy::too_many_arguments)]
fn product(
    dst: *mut f32,
    dst_len: usize,
    start: Start,
    h: &[f32],
    batch: usize,
    w: &Packed,
    parallel: bool,
    act: Epilogue,
) {
    let (cols, k) = (w.cols, w.k);
    if batch == 0 || cols == 0 || dst_len < batch * cols || h.len() < batch * k {
        return;
    }
    if let Start::Row(b) = start {
        if b.len() < cols {
            return;
        }
    }
    if k == 0 {
        for r in 0..batch {
            for j in 0..cols {
                // SAFETY: inside `dst` (checked above); written, not read,
                // unless `start` is `Dst` (then initialised).
                unsafe {
                    let d = dst.add(r * cols + j);
                    match start {
                        Start::Zero => d.write(0.0),
                        Start::Row(b) => d.write(b[j]),
                        Start::Dst => {}
                    }
                }
            }
        }
        if act != Epilogue::None {
            // SAFETY: every element is initialised now.
            let v = unsafe { std::slice::from_raw_parts_mut(dst, batch * cols) };
            crate::conv::math::epilogue(act, 0.0, v);
        }
        return;
    }
    let (width, tile_rows) = if w.width == PANEL_512 {
        (PANEL_512, ROWS_512)
    } else {
        (PANEL, ROWS)
    };
    let panels = cols.div_ceil(width);
    let threads = if parallel && batch * cols * k >= 1 << 18 {
        rayon::current_num_threads().min(panels)
    } else {
        1
    };
    let out = Shared(dst);
    let run = |range: std::ops::Range<usize>| {
        for p in range {
            let valid = width.min(cols - p * width);
            let start = match start {
                Start::Zero => TileStart::Zero,
                Start::Dst => TileStart::Dst,
                Start::Row(b) => TileStart::Row(b[p * width..].as_ptr()),
            };
            for b0 in (0..batch).step_by(tile_rows) {
                let rows = tile_rows.min(batch - b0);
                // SAFETY: rows b0..b0 + rows of `dst` and `h` exist (checked
                // above), columns p * width .. p * width + valid of `dst`
                // too; this call writes only those, and no other panel range
                // holds p.
                unsafe {
                    tile(
                        out.at(b0 * cols + p * width),
                        cols,
                        start,
                        h.as_ptr().add(b0 * k),
                        k,
                        (w.panel(p), width),
                        rows,
                        valid,
                    )
                };
                if act != Epilogue::None {
                    for r in b0..b0 + rows {
                        // SAFETY: the tile just written, row r's `valid`
                        // columns of this panel: inside `dst` (checked
                        // above) and written by this thread alone.
                        let v = unsafe {
                            std::slice::from_raw_parts_mut(out.at(r * cols + p * width), valid)
                        };
                        crate::conv::math::epilogue(act, 0.0, v);
                    }
                }
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

/// One tile: `rows` batch rows (at most 6, or 8 for a 32-wide panel) by
/// `width` (at most the panel's width) columns.
///
/// # Safety
/// `dst` points at `rows` rows of `width` floats, `dst_stride` apart; `h`
/// at `rows` rows of `panel.len() / panel_width` floats, `h_stride` apart.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    dst: *mut f32,
    dst_stride: usize,
    start: TileStart,
    h: *const f32,
    h_stride: usize,
    (panel, panel_width): (&[f32], usize),
    rows: usize,
    width: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if panel_width == PANEL_512 {
            // SAFETY: 32-wide panels are packed only where the CPU has
            // AVX-512F (`Packed::new`; the tests build them only there);
            // the pointers are as the caller promises.
            unsafe { tile_avx512(dst, dst_stride, start, h, h_stride, panel, rows, width) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above); the
            // pointers are as the caller promises.
            unsafe { tile_avx2(dst, dst_stride, start, h, h_stride, panel, rows, width) };
            return;
        }
    }
    // SAFETY: as the caller promises.
    unsafe {
        tile_plain(
            dst,
            dst_stride,
            start,
            h,
            h_stride,
            (panel, panel_width),
            rows,
            width,
        )
    }
}

/// The tile in plain Rust, for CPUs without AVX2 and FMA.
///
/// # Safety
/// As [`tile`].
#[allow(clippy::too_many_arguments)]
unsafe fn tile_plain(
    dst: *mut f32,
    dst_stride: usize,
    start: TileStart,
    h: *const f32,
    h_stride: usize,
    (panel, pw): (&[f32], usize),
    rows: usize,
    width: usize,
) {
    let k = panel.len() / pw;
    for r in 0..rows {
        let mut sum = [0.0f32; PANEL_512];
        if let TileStart::Row(b) = start {
            for (c, s) in sum.iter_mut().enumerate().take(width) {
                // SAFETY: the row has `width` floats here.
                *s = unsafe { *b.add(c) };
            }
        }
        for kk in 0..k {
            // SAFETY: row r of `h` has k floats.
            let hv = unsafe { *h.add(r * h_stride + kk) };
            for (s, &wv) in sum.iter_mut().zip(&panel[kk * pw..(kk + 1) * pw]) {
                *s += hv * wv;
            }
        }
        for (c, &s) in sum.iter().enumerate().take(width) {
            // SAFETY: row r of `dst` has `width` floats.
            unsafe {
                let d = dst.add(r * dst_stride + c);
                match start {
                    TileStart::Dst => *d += s,
                    TileStart::Zero | TileStart::Row(_) => d.write(s),
                }
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
    start: TileStart,
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
        if let TileStart::Row(b) = start {
            let mut row = [0.0f32; PANEL];
            std::ptr::copy_nonoverlapping(b, row.as_mut_ptr(), width);
            let v = [
                _mm256_loadu_ps(row.as_ptr()),
                _mm256_loadu_ps(row.as_ptr().add(8)),
            ];
            for ar in a.iter_mut().take(rows) {
                *ar = v;
            }
        }
        if let TileStart::Dst = start {
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

/// The tile with AVX-512: 8 x 32 accumulators in registers over `k`,
/// partial columns through masks.
///
/// # Safety
/// As [`tile`], with a 32-wide panel, on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512(
    dst: *mut f32,
    dst_stride: usize,
    start: TileStart,
    h: *const f32,
    h_stride: usize,
    panel: &[f32],
    rows: usize,
    width: usize,
) {
    use std::arch::x86_64::*;
    let k = panel.len() / PANEL_512;
    let w = panel.as_ptr();
    // Lanes of the two vectors that hold real columns.
    let lanes = |from: usize| -> __mmask16 {
        let n = width.saturating_sub(from).min(16);
        ((1u32 << n) - 1) as __mmask16
    };
    let (m0, m1) = (lanes(0), lanes(16));
    // SAFETY (for the whole body): `w` has k * 32 floats; rows < `rows` of
    // `h` have k floats and of `dst` `width` floats, which the masks keep
    // to (the caller's promise).
    unsafe {
        let mut a = [[_mm512_setzero_ps(); 2]; ROWS_512];
        if let TileStart::Row(b) = start {
            let v = [
                _mm512_maskz_loadu_ps(m0, b),
                _mm512_maskz_loadu_ps(m1, b.add(16)),
            ];
            for ar in a.iter_mut().take(rows) {
                *ar = v;
            }
        }
        if let TileStart::Dst = start {
            for (r, ar) in a.iter_mut().enumerate().take(rows) {
                ar[0] = _mm512_maskz_loadu_ps(m0, dst.add(r * dst_stride));
                ar[1] = _mm512_maskz_loadu_ps(m1, dst.add(r * dst_stride + 16));
            }
        }
        macro_rules! rows_loop {
            ($n:literal) => {{
                for kk in 0..k {
                    let w0 = _mm512_loadu_ps(w.add(kk * PANEL_512));
                    let w1 = _mm512_loadu_ps(w.add(kk * PANEL_512 + 16));
                    for r in 0..$n {
                        let hv = _mm512_set1_ps(*h.add(r * h_stride + kk));
                        a[r][0] = _mm512_fmadd_ps(hv, w0, a[r][0]);
                        a[r][1] = _mm512_fmadd_ps(hv, w1, a[r][1]);
                    }
                }
            }};
        }
        match rows {
            8 => rows_loop!(8),
            7 => rows_loop!(7),
            6 => rows_loop!(6),
            5 => rows_loop!(5),
            4 => rows_loop!(4),
            3 => rows_loop!(3),
            2 => rows_loop!(2),
            _ => rows_loop!(1),
        }
        for (r, ar) in a.iter().enumerate().take(rows) {
            _mm512_mask_storeu_ps(dst.add(r * dst_stride), m0, ar[0]);
            _mm512_mask_storeu_ps(dst.add(r * dst_stride + 16), m1, ar[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable tile (for CPUs without AVX2 and FMA) against the
    /// definition, on a partial tile, adding to `dst` and from a bias row.
    #[test]
    fn plain_tile_equals_the_definition() {
        let (rows, width, k) = (5, 11, 9);
        let w: Vec<f32> = (0..width * k).map(|i| (i % 13) as f32 - 6.0).collect();
        let h: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let bias: Vec<f32> = (0..width).map(|j| j as f32 - 4.0).collect();
        let packed = Packed::with_width(&w, width, k, PANEL);
        for (start, base) in [
            (TileStart::Dst, [1.0f32; 11]),
            (
                TileStart::Row(bias.as_ptr()),
                std::array::from_fn(|j| bias[j]),
            ),
        ] {
            let mut dst = vec![1.0f32; rows * width];
            // SAFETY: dst has `rows` rows of `width`, h `rows` rows of k,
            // the bias `width` floats.
            unsafe {
                tile_plain(
                    dst.as_mut_ptr(),
                    width,
                    start,
                    h.as_ptr(),
                    k,
                    (packed.panel(0), PANEL),
                    rows,
                    width,
                )
            };
            for r in 0..rows {
                for j in 0..width {
                    let dot: f32 = (0..k).map(|kk| h[r * k + kk] * w[j * k + kk]).sum();
                    assert_eq!(dst[r * width + j], base[j] + dot);
                }
            }
        }
    }

    /// `from_columns(v)` packs `vᵀ`: the same panels as `new` of the
    /// transposed matrix.
    #[test]
    fn packing_from_columns_equals_packing_the_transpose() {
        let (k, cols) = (7, 45);
        let v: Vec<f32> = (0..k * cols).map(|i| i as f32).collect();
        let vt: Vec<f32> = (0..cols * k).map(|i| v[(i % k) * cols + i / k]).collect();
        assert_eq!(
            Packed::from_columns(&v, cols, k).data,
            Packed::new(&vt, cols, k).data
        );
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
            // The 16-wide panels (AVX2, or plain), and the 32-wide ones
            // where the CPU has AVX-512.
            let widths: &[usize] = if has_avx512() {
                &[PANEL, PANEL_512]
            } else {
                &[PANEL]
            };
            let bias: Vec<f32> = (0..cols).map(|j| (j % 5) as f32 - 2.0).collect();
            for (&width, acc) in widths.iter().flat_map(|w| [(w, false), (w, true)]) {
                let packed = Packed::with_width(&w, cols, k, width);
                // Starting from a bias row, into uninitialised memory.
                let mut fresh: Vec<f32> = Vec::with_capacity(batch * cols);
                let dst = &mut fresh.spare_capacity_mut()[..batch * cols];
                assert!(product_into(
                    dst,
                    Some(&bias),
                    &h,
                    batch,
                    &packed,
                    Epilogue::None
                ));
                // SAFETY: written whole (asserted).
                unsafe { fresh.set_len(batch * cols) };
                for b in 0..batch {
                    for j in 0..cols {
                        let dot: f32 = (0..k).map(|kk| h[b * k + kk] * w[j * k + kk]).sum();
                        let want = bias[j] + dot;
                        let g = fresh[b * cols + j];
                        assert!(
                            (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "bias row, width {width} batch {batch} cols {cols} k {k}: [{b}, {j}] {g} vs {want}"
                        );
                    }
                }
                let mut got = init.clone();
                recurrent(&mut got, acc, &h, batch, &packed);
                for b in 0..batch {
                    for j in 0..cols {
                        let dot: f32 = (0..k).map(|kk| h[b * k + kk] * w[j * k + kk]).sum();
                        let want = if acc { init[b * cols + j] + dot } else { dot };
                        let g = got[b * cols + j];
                        assert!(
                            (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "width {width} batch {batch} cols {cols} k {k} acc {acc}: [{b}, {j}] {g} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
