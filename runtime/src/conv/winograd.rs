//! Winograd's minimal filtering F(4x4, 3x3) for 3x3, stride-1, undilated,
//! ungrouped convolutions (Lavin & Gray 2016): each 4x4 output tile of one
//! channel pair takes 36 multiplies instead of 144, so the product part of
//! the work shrinks 4x.
//!
//! With `d` a 6x6 input patch and `g` a 3x3 filter,
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` over the interpolation points
//! 0, ±1, ±2 and ∞. Summed over input channels, the elementwise products
//! become 36 independent matrix products per block of tiles:
//! `M[ξ] [Cout, T] = U[ξ] [Cout, Cin] x V[ξ] [Cin, T]`, `ξ < 36`, with
//! `U = G g Gᵀ` transformed once per weight ([`transform_weight`], cached
//! with the network's folded weights) and `V = Bᵀ d B` per forward.
//!
//! A forward runs over blocks of `T` tiles (all images' tiles in one
//! sequence), in three parallel phases per block: the input transform
//! (by input channel), the 36 products (by `ξ`, one single-threaded
//! `gemm` each), the output transform with the bias and activation (by
//! output channel). The transforms work on 8 tiles at a time, one per
//! SIMD lane.
//!
//! Accuracy: the transforms' constants (up to 8 in `Aᵀ`, 1/24 in `G`) grow
//! rounding error; in f32 the result differs from the direct convolution
//! by about 1e-6 relative to the output's magnitude (tested at 2e-5 below
//! and against PyTorch at 1e-4 in `tests/cnn.rs`).

use rayon::prelude::*;

use super::cpu::{aligned, matmul, SyncPtr};
use super::geom::Geom;
#[cfg(target_arch = "x86_64")]
use super::kernel::Packed;
use super::math::{epilogue_inline, simd};
use super::Epilogue;

/// Tiles per SIMD group.
const LANES: usize = 8;
/// Transformed tile: 6x6.
const XI: usize = 36;

type Lane = [f32; LANES];

/// Whether F(4x4, 3x3) computes this convolution.
pub(super) fn applies(g: &Geom) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.groups == 1
}

/// Tiles from which a convolution whose weights change between calls (a
/// training step's forward, an input or weight gradient) runs Winograd,
/// its weights transformed per call into a buffer the thread keeps. The
/// transform costs about as much as the products of a dozen or two tiles
/// whatever the channel counts, so the tile count decides: `cargo bench
/// --bench conv3x3` (its training column, with this threshold at 1)
/// measured 0.4-0.74x the direct time from 32 tiles (ResNet-18's 7x7 stage
/// at batch 8) and 1.15x at 16 (VGG-16's 14x14 layers at batch 1), 4.4x at
/// 4.
const PER_CALL_TILES: usize = 32;

/// Whether F(4x4, 3x3) with its weights transformed on every call pays:
/// [`applies`], at least 8 channels each way (as the compiler's choice
/// requires) and [`PER_CALL_TILES`] output tiles.
pub(super) fn pays_per_call(g: &Geom) -> bool {
    applies(g) && g.cin.min(g.cout) >= 8 && tiling(g).1 >= PER_CALL_TILES
}

/// Whether Winograd pays for `g` on this CPU, by the compiler's model:
/// against the direct lowering where the CPU runs it (AVX-512), else
/// against the gathered one ([`netdsl_summary::winograd_pays_gathered`]).
pub(super) fn pays_here(g: &Geom) -> bool {
    // `has_avx512` is false off x86-64.
    let model = if crate::rnn_kernel::has_avx512() {
        netdsl_summary::winograd_pays
    } else {
        netdsl_summary::winograd_pays_gathered
    };
    let size = |v: usize| v as u64;
    model(size(g.cin), size(g.cout), size(g.b), size(g.oh), size(g.ow))
}

/// Winograd's `G` for F(4x4, 3x3).
const G: [[f32; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Tiles from which the weight gradient runs through [`weight_grad`]: its
/// 36 products each write a whole `Cout x Cin` block of `M` from an inner
/// dimension of the tile count, so it needs more tiles than the forward.
/// ResNet-18 at batch 8 (the training step's profile): 0.5x the direct
/// time at 392 and 1568 tiles, 0.82x at 128, 2.5x at 32.
const WEIGHT_GRAD_TILES: usize = 128;

/// Whether [`weight_grad`] computes this convolution's weight gradient:
/// [`applies`], at least 8 channels each way and [`WEIGHT_GRAD_TILES`]
/// output tiles.
pub(super) fn pays_for_weight_grad(g: &Geom) -> bool {
    applies(g) && g.cin.min(g.cout) >= 8 && tiling(g).1 >= WEIGHT_GRAD_TILES
}

/// `U[ξ][co][ci] = (G g Gᵀ)[ξ]` for `w [Cout, Cin, 3, 3]`.
pub(crate) fn transform_weight(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0f32; XI * cout * cin];
    transform_into(w, cout, cin, &mut u);
    u
}

/// A weight's transform as prepared weights keep it: with AVX-512, packed
/// for the runtime's matrix kernel (the 36 products as 36 groups of
/// `Cout x Cin`; `gemm` packed each `U[ξ]` again for every block of tiles),
/// else as [`transform_weight`] gives it. One form only: VGG-16's
/// transforms are 235 MB.
#[derive(Debug)]
pub(crate) enum Transformed {
    Raw(Vec<f32>),
    #[cfg(target_arch = "x86_64")]
    Packed(Packed),
}

impl Transformed {
    pub(crate) fn new(w: &[f32], cout: usize, cin: usize) -> Transformed {
        let u = transform_weight(w, cout, cin);
        #[cfg(target_arch = "x86_64")]
        if crate::rnn_kernel::has_avx512() {
            return Transformed::Packed(Packed::new(&u, XI, cout, cin));
        }
        Transformed::Raw(u)
    }

    /// The matrices [`forward`] reads, if Winograd [`applies`] to `g` and
    /// they are `g`'s.
    pub(super) fn for_geom(&self, g: &Geom) -> Option<U<'_>> {
        if !applies(g) {
            return None;
        }
        match self {
            Transformed::Raw(u) => (u.len() == XI * g.cout * g.cin).then_some(U::Raw(u)),
            #[cfg(target_arch = "x86_64")]
            Transformed::Packed(p) => p.fits_matrices(XI, g.cout, g.cin).then_some(U::Packed(p)),
        }
    }
}

/// The 36 matrices `U[ξ]` (`Cout x Cin`) of [`forward`]'s products.
#[derive(Clone, Copy)]
pub(super) enum U<'a> {
    /// As [`transform_weight`] gives them: multiplied by `gemm`.
    Raw(&'a [f32]),
    /// Packed: multiplied by the runtime's kernel (AVX-512).
    #[cfg(target_arch = "x86_64")]
    Packed(&'a Packed),
}

thread_local! {
    /// The transformed weights of [`with_transformed`], kept between calls
    /// on this thread: a fresh 38 MB buffer for a 512-channel layer cost
    /// about 20 ms of page faults per call, ten times the transform.
    static PER_CALL_U: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` of [`transform_weight`]`(w)`, in a buffer this thread keeps: for
/// weights that change between calls (training).
pub(super) fn with_transformed<R>(
    w: &[f32],
    cout: usize,
    cin: usize,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    let n = XI * cout * cin;
    let mut u = PER_CALL_U.with(|c| std::mem::take(&mut *c.borrow_mut()));
    if u.len() < n {
        u.resize(n, 0.0);
    }
    transform_into(w, cout, cin, &mut u[..n]);
    let r = f(&u[..n]);
    // After the thread's locals are gone there is nowhere to keep it.
    let _ = PER_CALL_U.try_with(|c| *c.borrow_mut() = u);
    r
}

/// [`transform_weight`] into `u` (`36 · cout · cin` floats, every one
/// written).
fn transform_into(w: &[f32], cout: usize, cin: usize, u: &mut [f32]) {
    // (G g Gᵀ)[i][j] = Σ_ab G[i][a] G[j][b] g[a][b]: one fixed 36 x 9
    // matrix T times every kernel, so U [36, cout · cin] = T x Wᵀ, the
    // kernels `w [cout · cin, 9]` read as columns. One product per block
    // of kernels, split between the threads; writing U (4x the weight) is
    // what it costs.
    const KERNELS: usize = 4096;
    let mut t = [0f32; XI * 9];
    for (xi, row) in t.chunks_exact_mut(9).enumerate() {
        let (i, j) = (xi / 6, xi % 6);
        for (ab, v) in row.iter_mut().enumerate() {
            *v = G[i][ab / 3] * G[j][ab % 3];
        }
    }
    let n = cout * cin;
    let up = SyncPtr(u.as_mut_ptr());
    let t = &t;
    (0..n.div_ceil(KERNELS)).into_par_iter().for_each(|c| {
        let (c0, len) = (c * KERNELS, KERNELS.min(n - c * KERNELS));
        // SAFETY: job c alone writes columns c0..c0 + len of every row of
        // U; `w` holds the 9 floats of each of its kernels.
        unsafe {
            matmul(
                XI,
                len,
                9,
                up.ptr().add(c0),
                n,
                false,
                t.as_ptr(),
                9,
                1,
                w.as_ptr().add(c0 * 9),
                1,
                9,
            );
        }
    });
}

/// `Bᵀ d` for six lanes of values.
#[inline(always)]
fn bt(d: [&Lane; 6]) -> [Lane; 6] {
    let mut o = [[0f32; LANES]; 6];
    for l in 0..LANES {
        let (d0, d1, d2, d3, d4, d5) = (d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]);
        o[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        o[1][l] = -4.0 * (d1 + d2) + d3 + d4;
        o[2][l] = 4.0 * (d1 - d2) - d3 + d4;
        o[3][l] = 2.0 * (d3 - d1) - d2 + d4;
        o[4][l] = 2.0 * (d1 - d3) - d2 + d4;
        o[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    o
}

/// `Aᵀ m` for six lanes of values.
#[inline(always)]
fn at(m: [&Lane; 6]) -> [Lane; 4] {
    let mut o = [[0f32; LANES]; 4];
    for l in 0..LANES {
        let (m0, m1, m2, m3, m4, m5) = (m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]);
        let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        o[0][l] = m0 + s12 + s34;
        o[1][l] = d12 + 2.0 * d34;
        o[2][l] = s12 + 4.0 * s34;
        o[3][l] = d12 + 8.0 * d34 + m5;
    }
    o
}

/// Where a block's tiles lie.
struct Tiles {
    /// Tiles per row and per image.
    tw: usize,
    per_image: usize,
}

impl Tiles {
    /// `(image, top output row, left output column)` of tile `t`.
    fn at(&self, t: usize) -> (usize, usize, usize) {
        let (b, r) = (t / self.per_image, t % self.per_image);
        (b, 4 * (r / self.tw), 4 * (r % self.tw))
    }
}

/// One block of tiles: `t0..t0 + n`, stored `tp` (a multiple of the lane
/// count) per row of `V` and `M`.
#[derive(Clone, Copy)]
struct Block<'a> {
    g: &'a Geom,
    tiles: &'a Tiles,
    t0: usize,
    n: usize,
    tp: usize,
}

/// `d[i][j][l]`, the 6x6 input patch of tile `t0 + grp + l` for the 8
/// lanes `l`, when those tiles lie side by side in one row of one image
/// (most groups of a large image): for each of the 6 input rows, the 34
/// floats the 8 patches span (zero in the padding, through a zero-padded
/// copy of the row at an edge) are loaded once and dealt into the 6
/// columns' lanes by AVX-512 permutes (lane `l` of column `j` is float
/// `4l + j`), instead of 288 scalar loads and stores. Returns whether it
/// wrote all of `d` (false: not such a group, or no AVX-512; the caller
/// gathers lane by lane).
#[inline]
fn gather_row_of_tiles(
    blk: Block,
    x: &[f32],
    ci: usize,
    grp: usize,
    d: &mut std::mem::MaybeUninit<[[Lane; 6]; 6]>,
) -> bool {
    let g = blk.g;
    let Some((b, oy, ox)) = row_of_tiles(blk, grp) else {
        return false;
    };
    // The 8 patches span columns ix0 .. ix0 + 34 (4 (LANES - 1) + 6) of
    // rows iy0 .. iy0 + 6, zero where those lie in the padding.
    let (iy0, ix0) = (oy as isize - g.pt as isize, ox as isize - g.pl as isize);
    let hw = g.h * g.w;
    let plane = &x[(b * g.cin + ci) * hw..][..hw];
    #[cfg(target_arch = "x86_64")]
    {
        // Row i of the patches, `None` in the top or bottom padding.
        let line = |i: usize| {
            let iy = iy0 + i as isize;
            (iy >= 0 && iy < g.h as isize).then(|| &plane[iy as usize * g.w..][..g.w])
        };
        let rows = d.as_mut_ptr().cast::<[Lane; 6]>();
        // The span's three loads (16, 16 and 2 floats) under masks that
        // keep to the input's columns: an edge group's padding is read as
        // zero in place. (Copied into zeroed spans first, with a `memmove`
        // call per row, these copies were 6 % of the U-Net.)
        let lanes = |from: isize| super::cpu::lanes(-ix0 - from, g.w as isize - ix0 - from);
        let masks = [lanes(0), lanes(16), lanes(32) & 0b11];
        let src: [Option<*const f32>; 6] =
            std::array::from_fn(|i| line(i).map(|l| l.as_ptr().wrapping_offset(ix0)));
        // SAFETY: the CPU has AVX-512F (checked above); each row's masked
        // lanes are its columns inside the input row; `rows` is `d`'s 6
        // rows.
        unsafe { deal_rows(src, masks, rows) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (plane, d);
        false
    }
}

/// `rows[i][j][l] = src[i][4 l + j]` for `j < 6`, `l < 8`, and zero
/// lanes for a row given as `None`; one call for the 6 rows of a patch,
/// its permutes' index vectors made once. Each row's 34 floats are read
/// as three vectors (16, 16, 2) under `masks`: a masked-off float reads
/// as zero.
///
/// # Safety
/// The CPU has AVX-512F; for each row of `src`, the floats its masks let
/// through are readable; `rows` points to 6 x 6 x 8 writable floats (which
/// may be uninitialised).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn deal_rows(src: [Option<*const f32>; 6], masks: [u16; 3], rows: *mut [Lane; 6]) {
    use std::arch::x86_64::*;
    // Column m < 4: lane l takes float 4 l + m of the first 32.
    let by4 = |m: i32| {
        _mm512_setr_epi32(
            m,
            m + 4,
            m + 8,
            m + 12,
            m + 16,
            m + 20,
            m + 24,
            m + 28,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        )
    };
    let idx = [by4(0), by4(1), by4(2), by4(3)];
    // Columns 4 and 5: columns 0 and 1 one lane on, the last lane from
    // floats 32 and 33.
    let on = |last: i32| _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, last, 0, 0, 0, 0, 0, 0, 0, 0);
    let (on16, on17) = (on(16), on(17));
    for (i, r) in src.into_iter().enumerate() {
        // SAFETY: row i of the 6 at `rows`; the loads read only the
        // floats of `r` that the masks let through (the caller's promise).
        unsafe {
            let out = rows.add(i).cast::<f32>();
            let Some(r) = r else {
                for j in 0..6 {
                    _mm256_storeu_ps(out.add(j * LANES), _mm256_setzero_ps());
                }
                continue;
            };
            let a = _mm512_maskz_loadu_ps(masks[0], r);
            let b = _mm512_maskz_loadu_ps(masks[1], r.wrapping_add(16));
            let c = _mm512_maskz_loadu_ps(masks[2], r.wrapping_add(32));
            let p0 = _mm512_permutex2var_ps(a, idx[0], b);
            let p1 = _mm512_permutex2var_ps(a, idx[1], b);
            let p = [
                p0,
                p1,
                _mm512_permutex2var_ps(a, idx[2], b),
                _mm512_permutex2var_ps(a, idx[3], b),
                _mm512_permutex2var_ps(p0, on16, c),
                _mm512_permutex2var_ps(p1, on17, c),
            ];
            for (j, v) in p.into_iter().enumerate() {
                _mm256_storeu_ps(out.add(j * LANES), _mm512_castps512_ps256(v));
            }
        }
    }
}

/// `d[i][j][l]`, the 6x6 input patch of tile `t0 + grp + l` for each of
/// the 8 lanes `l` (zero where a patch hits padding or past the block's
/// tiles), gathered lane by lane: tiles at an edge or a row's end.
#[inline(always)]
fn gather_lanes(blk: Block, x: &[f32], ci: usize, grp: usize) -> [[Lane; 6]; 6] {
    let Block {
        g, tiles, t0, n, ..
    } = blk;
    let hw = g.h * g.w;
    let mut d = [[[0f32; LANES]; 6]; 6];
    for l in 0..LANES.min(n - grp) {
        let (b, oy, ox) = tiles.at(t0 + grp + l);
        let plane = &x[(b * g.cin + ci) * hw..][..hw];
        let (iy0, ix0) = (oy as isize - g.pt as isize, ox as isize - g.pl as isize);
        let inside = iy0 >= 0 && ix0 >= 0 && iy0 as usize + 6 <= g.h && ix0 as usize + 6 <= g.w;
        if inside {
            let base = iy0 as usize * g.w + ix0 as usize;
            for (i, row) in d.iter_mut().enumerate() {
                let src = &plane[base + i * g.w..][..6];
                for j in 0..6 {
                    row[j][l] = src[j];
                }
            }
        } else {
            for (i, row) in d.iter_mut().enumerate() {
                let iy = iy0 + i as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                for (j, cell) in row.iter_mut().enumerate() {
                    let ix = ix0 + j as isize;
                    if ix >= 0 && ix < g.w as isize {
                        cell[l] = plane[iy as usize * g.w + ix as usize];
                    }
                }
            }
        }
    }
    d
}

simd! {
    /// `V[ξ][ci][..]` of the block's tiles (lanes past `n` zero), for
    /// input channel `ci`.
    fn input_channel(blk: Block, x: &[f32], ci: usize, v: SyncPtr) {
        let Block { g, n, tp, .. } = blk;
        for grp in (0..n).step_by(LANES) {
            // Not zeroed first where 8 tiles lie side by side inside one
            // row (most of a large image's), as every lane is written
            // there: zeroing this 1 KiB per group, and the transform's
            // intermediate below, were `memset` calls, 6 % of a 16-channel
            // U-Net's time.
            let mut buf = std::mem::MaybeUninit::uninit();
            let d: &[[Lane; 6]; 6] = if gather_row_of_tiles(blk, x, ci, grp, &mut buf) {
                // SAFETY: `gather_row_of_tiles` wrote every lane of `buf`.
                unsafe { buf.assume_init_ref() }
            } else {
                buf.write(gather_lanes(blk, x, ci, grp))
            };
            // columns (`cols[j][i]` is row i of column j), then rows
            let cols: [[Lane; 6]; 6] =
                in_place(|j| bt([&d[0][j], &d[1][j], &d[2][j], &d[3][j], &d[4][j], &d[5][j]]));
            #[allow(clippy::needless_range_loop)] // `i` picks a row of each column
            for i in 0..6 {
                let row = [&cols[0][i], &cols[1][i], &cols[2][i], &cols[3][i], &cols[4][i], &cols[5][i]];
                let r = bt(row);
                for (j, lane) in r.iter().enumerate() {
                    let at = ((i * 6 + j) * g.cin + ci) * tp + grp;
                    // SAFETY: channel ci's rows of V belong to this job alone.
                    unsafe { v.slice(at, LANES) }.copy_from_slice(lane);
                }
            }
        }
    }
}

simd! {
    /// The block's output tiles of channel `co` from `M[ξ][co][..]`, with
    /// bias and activation, written into `y`.
    fn output_channel(blk: Block, m: &[f32], co: usize, bias: f32, act: Epilogue, y: SyncPtr) {
        let Block { g, tiles, t0, n, tp } = blk;
        let p = g.oh * g.ow;
        for grp in (0..n).step_by(LANES) {
            // Columns (`cs[j][i]` is row i of column j), then rows.
            // (A loop, not `in_place`: its closure, this large, was called
            // out of line, compiled without the vector features.)
            let mut cs = std::mem::MaybeUninit::<[[Lane; 4]; 6]>::uninit();
            let cp = cs.as_mut_ptr().cast::<[Lane; 4]>();
            let step = 6 * g.cout * tp;
            for j in 0..6 {
                let col = &m[(j * g.cout + co) * tp + grp..][..5 * step + LANES];
                let c = at([
                    lane(col, 0),
                    lane(col, step),
                    lane(col, 2 * step),
                    lane(col, 3 * step),
                    lane(col, 4 * step),
                    lane(col, 5 * step),
                ]);
                // SAFETY: column j of the 6 in `cs`.
                unsafe { cp.add(j).write(c) };
            }
            // SAFETY: all 6 columns were written just above.
            let cs = unsafe { cs.assume_init_ref() };
            let mut o: [[Lane; 4]; 4] =
                in_place(|i| at([&cs[0][i], &cs[1][i], &cs[2][i], &cs[3][i], &cs[4][i], &cs[5][i]]));
            // Inlined: the `epilogue` wrapper's feature test per group.
            epilogue_inline(act, bias, o.as_flattened_mut().as_flattened_mut());
            if store_row_of_tiles(blk, grp, co, &o, y) {
                continue;
            }
            for l in 0..LANES.min(n - grp) {
                let (b, oy, ox) = tiles.at(t0 + grp + l);
                let base = (b * g.cout + co) * p;
                for (i, row) in o.iter().enumerate().take(g.oh - oy.min(g.oh)) {
                    let at = base + (oy + i) * g.ow + ox;
                    let cols = 4.min(g.ow - ox);
                    for (j, r) in row.iter().enumerate().take(cols) {
                        // SAFETY: inside `y` (b · cout · oh · ow floats);
                        // channel co's planes belong to this job alone.
                        // Written through the pointer: `y` is not
                        // initialised before.
                        unsafe { y.ptr().add(at + j).write(r[l]) };
                    }
                }
            }
        }
    }
}

/// `(image, top row, left column)` of the group of 8 tiles from `grp`
/// when they lie side by side in one row of one image and the CPU has
/// AVX-512: the groups whose patches are dealt, and whose outputs are
/// stored, a row of 8 at a time.
#[inline]
fn row_of_tiles(blk: Block, grp: usize) -> Option<(usize, usize, usize)> {
    let Block { tiles, t0, n, .. } = blk;
    if grp + LANES > n || !crate::rnn_kernel::has_avx512() {
        return None;
    }
    let (b, oy, ox) = tiles.at(t0 + grp);
    let (b2, oy2, ox2) = tiles.at(t0 + grp + LANES - 1);
    (b2 == b && oy2 == oy && ox2 == ox + 4 * (LANES - 1)).then_some((b, oy, ox))
}

/// The lane of `LANES` floats at `at` in `m`.
#[inline(always)]
fn lane(m: &[f32], at: usize) -> &Lane {
    m[at..at + LANES]
        .try_into()
        .expect("a lane is LANES floats")
}

/// `[f(0), .., f(N - 1)]`, each element written in place as it is made
/// (inlined into the transforms' loops): their arrays of lanes, zeroed and
/// filled or built by `array::from_fn` (not inlined), cost a `memset` or
/// `memcpy` call per group of 8 tiles, 6 % of a 16-channel U-Net.
#[inline(always)]
fn in_place<T, const N: usize>(mut f: impl FnMut(usize) -> T) -> [T; N] {
    let mut a = std::mem::MaybeUninit::<[T; N]>::uninit();
    let p = a.as_mut_ptr().cast::<T>();
    for i in 0..N {
        // SAFETY: element i of the N in `a`.
        unsafe { p.add(i).write(f(i)) };
    }
    // SAFETY: all N elements were written just above.
    unsafe { a.assume_init() }
}

/// Stores the output tiles `o[i][j][l]` of channel `co` when the group's
/// 8 tiles lie side by side in one row of one image, all inside the
/// output: each of the 4 output rows is 32 consecutive floats (tile `l`'s
/// column `j` at `4 l + j`), interleaved by AVX-512 permutes and stored as
/// two vectors, instead of 128 scalar stores. Returns whether it stored
/// them (false: not such a group, or no AVX-512).
#[inline]
fn store_row_of_tiles(blk: Block, grp: usize, co: usize, o: &[[Lane; 4]; 4], y: SyncPtr) -> bool {
    let g = blk.g;
    let Some((b, oy, ox)) = row_of_tiles(blk, grp) else {
        return false;
    };
    if oy + 4 > g.oh || ox + 4 * LANES > g.ow {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let base = (b * g.cout + co) * g.oh * g.ow;
        for (i, row) in o.iter().enumerate() {
            // SAFETY: the CPU has AVX-512F (checked above); the 32 floats
            // from `at` are output row oy + i's columns ox .. ox + 32 of
            // channel co of image b, inside `y` (checked above) and this
            // job's alone.
            unsafe { interleave_row(row, y.ptr().add(base + (oy + i) * g.ow + ox)) };
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (o, y, co);
        false
    }
}

/// `out[4 l + j] = row[j][l]` for `j < 4`, `l < 8`: the inverse of
/// [`deal_rows`] for an output row of 8 tiles.
///
/// # Safety
/// The CPU has AVX-512F; `out` points to 32 writable floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn interleave_row(row: &[Lane; 4], out: *mut f32) {
    use std::arch::x86_64::*;
    // SAFETY: `row` holds 4 x 8 floats; `out` 32 (the caller's promise).
    unsafe {
        // Two columns in one vector (the 64-bit insert is AVX-512F's; the
        // 32-bit one needs DQ).
        let pair = |j: usize| {
            let lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(row[j].as_ptr())));
            let hi = _mm256_castps_pd(_mm256_loadu_ps(row[j + 1].as_ptr()));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, hi))
        };
        let (a, b) = (pair(0), pair(2));
        // Float k of the first 16 is tile k / 4's column k % 4: column 0
        // and 1 from `a` (lanes l, 8 + l), 2 and 3 from `b` (16 + l, 24 + l).
        let first = _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
        let second = _mm512_add_epi32(first, _mm512_set1_epi32(4));
        _mm512_storeu_ps(out, _mm512_permutex2var_ps(a, first, b));
        _mm512_storeu_ps(out.add(16), _mm512_permutex2var_ps(a, second, b));
    }
}

/// Tiles per block: `V` and `M` of one block about 1 MiB each, at least
/// one SIMD group and at most 512 tiles; a multiple of 16, the rows of the
/// matrix kernel's tile in the 36 products (a block of 16k + 8 tiles ran
/// its last 8 on the half-width kernel: 56 tiles at ResNet-18's 28x28
/// layers at batch 8, 120 at its 56x56 ones).
fn block_tiles(g: &Geom, total: usize) -> usize {
    const ROWS: usize = 2 * LANES;
    let per = XI * g.cin.max(g.cout);
    let t = ((256 * 1024) / per.max(1)).clamp(ROWS, 512);
    t.min(total.next_multiple_of(LANES)).next_multiple_of(ROWS)
}

/// Where `g`'s output tiles lie, how many there are, and how many a block
/// holds.
fn tiling(g: &Geom) -> (Tiles, usize, usize) {
    let tiles = Tiles {
        tw: g.ow.div_ceil(4),
        per_image: g.oh.div_ceil(4) * g.ow.div_ceil(4),
    };
    let total = g.b * tiles.per_image;
    let tp = block_tiles(g, total);
    (tiles, total, tp)
}

/// For each block of tiles in turn: `V` filled with the block's input
/// patches, transformed, then `f(block index, block, columns, V)`.
fn each_block(
    g: &Geom,
    x: &[f32],
    (tiles, total, tp): (&Tiles, usize, usize),
    v: &mut [f32],
    mut f: impl FnMut(usize, Block, usize, &[f32]),
) {
    for (k, t0) in (0..total).step_by(tp).enumerate() {
        let n = tp.min(total - t0);
        let blk = Block {
            g,
            tiles,
            t0,
            n,
            tp,
        };
        let vp = SyncPtr(v.as_mut_ptr());
        (0..g.cin)
            .into_par_iter()
            .with_min_len(4)
            .for_each(|ci| input_channel(blk, x, ci, vp));
        f(k, blk, n.next_multiple_of(LANES), v);
    }
}

/// `y = act(conv(x, w) + bias)` with `u` = [`transform_weight`] of `w`
/// (raw or packed).
pub(super) fn forward(g: &Geom, x: &[f32], u: U, bias: Option<&[f32]>, act: Epilogue) -> Vec<f32> {
    let (tiles, total, tp) = tiling(g);
    // The output is not zeroed first (every pixel is written by
    // `output_channel`, through the pointer); the transformed blocks `V`
    // and `M` are kept between calls on this thread, zeroed only when they
    // grow (a `memset` of each per call, about 2 MB for a 64-channel
    // layer, was part of the 5 % ResNet-18 spent zeroing).
    let ny = g.b * g.cout * g.oh * g.ow;
    let mut y: Vec<f32> = Vec::with_capacity(ny);
    let (mut vbuf, mut mbuf) = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    // From cache lines' starts: the products read V's rows per step.
    let v = aligned(&mut vbuf, XI * g.cin * tp);
    let m = aligned(&mut mbuf, XI * g.cout * tp);
    let yp = SyncPtr(y.as_mut_ptr());
    each_block(g, x, (&tiles, total, tp), v, |_, blk, cols, vr| {
        let mp = SyncPtr(m.as_mut_ptr());
        (0..XI).into_par_iter().for_each(|xi| {
            let (mx, vx) = (
                mp.ptr().wrapping_add(xi * g.cout * tp),
                vr[xi * g.cin * tp..].as_ptr(),
            );
            // SAFETY: product ξ writes only M[ξ] (`cout` rows of `cols`
            // floats, `tp` apart); U[ξ] and V[ξ] (`cin` rows of `cols`,
            // `tp` apart) are read.
            unsafe {
                match u {
                    U::Raw(u) => matmul(
                        g.cout,
                        cols,
                        g.cin,
                        mx,
                        tp,
                        false,
                        u[xi * g.cout * g.cin..].as_ptr(),
                        g.cin,
                        1,
                        vx,
                        tp,
                        1,
                    ),
                    #[cfg(target_arch = "x86_64")]
                    U::Packed(p) => super::kernel::product(
                        p,
                        xi,
                        (0, g.cout),
                        (vx, super::kernel::Stride(tp)),
                        cols,
                        (mx, tp, super::kernel::Cols::Dense),
                        None,
                        Epilogue::None,
                    ),
                }
            }
        });
        let mr = &*m;
        (0..g.cout).into_par_iter().with_min_len(4).for_each(|co| {
            let b = bias.map_or(0.0, |bs| bs[co]);
            output_channel(blk, mr, co, b, act, yp)
        });
    });
    SCRATCH.with(|s| *s.borrow_mut() = (vbuf, mbuf));
    // SAFETY: the blocks cover every tile of every image, and each tile's
    // `output_channel` writes its 4 x 4 pixels (clipped to the output) of
    // every channel: all `ny` elements.
    unsafe { y.set_len(ny) };
    y
}

thread_local! {
    /// `V` and `M` of [`forward`], kept for the next call on this thread.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `A g` for four lanes of values, `A = (Aᵀ)ᵀ` of [`at`]: the transform
/// of a 4x4 tile of the output's gradient in the weight gradient.
#[inline(always)]
fn a6(g: [&Lane; 4]) -> [Lane; 6] {
    let mut o = [[0f32; LANES]; 6];
    for l in 0..LANES {
        let (g0, g1, g2, g3) = (g[0][l], g[1][l], g[2][l], g[3][l]);
        let (s02, s13) = (g0 + g2, g1 + g3);
        let (q02, q13) = (g0 + 4.0 * g2, 2.0 * g1 + 8.0 * g3);
        o[0][l] = g0;
        o[1][l] = s02 + s13;
        o[2][l] = s02 - s13;
        o[3][l] = q02 + q13;
        o[4][l] = q02 - q13;
        o[5][l] = g3;
    }
    o
}

simd! {
    /// `D[ξ][co][..] = (A g Aᵀ)[ξ]` of the block's 4x4 tiles of `dz`
    /// channel `co` (zero outside the output; lanes past `n` zero).
    fn dz_channel(blk: Block, dz: &[f32], co: usize, d: SyncPtr) {
        let Block { g, tiles, t0, n, tp } = blk;
        let p = g.oh * g.ow;
        for grp in (0..n).step_by(LANES) {
            let mut t = [[[0f32; LANES]; 4]; 4];
            for l in 0..LANES.min(n - grp) {
                let (b, oy, ox) = tiles.at(t0 + grp + l);
                let plane = &dz[(b * g.cout + co) * p..][..p];
                for (i, row) in t.iter_mut().enumerate().take(g.oh - oy) {
                    let src = &plane[(oy + i) * g.ow + ox..];
                    for (j, cell) in row.iter_mut().enumerate().take(g.ow - ox) {
                        cell[l] = src[j];
                    }
                }
            }
            // columns, then rows
            let mut c6 = [[[0f32; LANES]; 4]; 6];
            for j in 0..4 {
                let c = a6([&t[0][j], &t[1][j], &t[2][j], &t[3][j]]);
                for (i, v) in c.into_iter().enumerate() {
                    c6[i][j] = v;
                }
            }
            for (i, row) in c6.iter().enumerate() {
                let r = a6([&row[0], &row[1], &row[2], &row[3]]);
                for (j, lane) in r.iter().enumerate() {
                    let at = ((i * 6 + j) * g.cout + co) * tp + grp;
                    // SAFETY: channel co's rows of D belong to this job alone.
                    unsafe { d.slice(at, LANES) }.copy_from_slice(lane);
                }
            }
        }
    }
}

/// The weight gradient of a 3x3 stride-1 convolution ([`applies`]) by
/// Winograd's F(4x4, 3x3) read the other way: with `Y` a 4x4 tile of the
/// output's gradient and `X` its 6x6 input patch, the tile's contribution
/// to `dW` is `Gᵀ [(A Y Aᵀ) ⊙ (Bᵀ X B)] G` (the forward's three matrices,
/// by the symmetry of the correlation's trilinear form), and the sum over
/// tiles and images can be taken before `Gᵀ .. G`, as 36 channel products
/// `M[ξ] = Σ_t D[ξ][co][t] V[ξ][ci][t]`: 36 multiplies per tile and channel
/// pair instead of 144. The input patches are the forward's transform.
pub(super) fn weight_grad(g: &Geom, dz: &[f32], x: &[f32]) -> Vec<f32> {
    let (tiles, total, tp) = tiling(g);
    let mut v = vec![0f32; XI * g.cin * tp];
    let mut d = vec![0f32; XI * g.cout * tp];
    let mut m = vec![0f32; XI * g.cout * g.cin];
    each_block(g, x, (&tiles, total, tp), &mut v, |k, blk, cols, vr| {
        let dp = SyncPtr(d.as_mut_ptr());
        (0..g.cout)
            .into_par_iter()
            .with_min_len(4)
            .for_each(|co| dz_channel(blk, dz, co, dp));
        let mp = SyncPtr(m.as_mut_ptr());
        let dr = &d;
        (0..XI).into_par_iter().for_each(|xi| {
            // SAFETY: product ξ writes only M[ξ]; D[ξ] and V[ξ] are read.
            unsafe {
                matmul(
                    g.cout,
                    g.cin,
                    cols,
                    mp.ptr().add(xi * g.cout * g.cin),
                    g.cin,
                    k > 0,
                    dr.as_ptr().add(xi * g.cout * tp),
                    tp,
                    1,
                    vr.as_ptr().add(xi * g.cin * tp),
                    1,
                    tp,
                );
            }
        });
    });
    // dW[co][ci] = Gᵀ M[·][co][ci] G, one output channel per job.
    let mut dw = vec![0f32; g.cout * g.cin * 9];
    let pairs = g.cout * g.cin;
    dw.par_chunks_mut(g.cin * 9)
        .enumerate()
        .for_each(|(co, out)| {
            for (ci, o) in out.chunks_exact_mut(9).enumerate() {
                let mx = |xi: usize| m[xi * pairs + co * g.cin + ci];
                // t = Gᵀ M: [3, 6]
                let mut t = [[0f32; 6]; 3];
                for (k, row) in t.iter_mut().enumerate() {
                    for (j, cell) in row.iter_mut().enumerate() {
                        *cell = (0..6).map(|i| G[i][k] * mx(i * 6 + j)).sum();
                    }
                }
                for k in 0..3 {
                    for l in 0..3 {
                        o[k * 3 + l] = (0..6).map(|j| t[k][j] * G[j][l]).sum();
                    }
                }
            }
        });
    dw
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conv::Conv2dSpec;

    /// `n` floats in [-1, 1) from a xorshift seeded with `seed` (the
    /// convolution tests' data, here and in `backward`).
    pub(crate) fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Equals the direct (im2col) lowering at odd sizes, paddings from 0 to
    /// 2 (asymmetric too), several images, channel counts that fill no
    /// SIMD group, and every epilogue kind.
    #[test]
    fn equals_the_direct_lowering() {
        let cases = [
            (1, 3, 5, 5, 4, ((1, 1), (1, 1)), Epilogue::None),
            (2, 7, 13, 11, 9, ((1, 1), (1, 1)), Epilogue::Relu),
            (3, 16, 9, 17, 5, ((0, 0), (0, 0)), Epilogue::Gelu),
            (1, 5, 23, 6, 17, ((2, 1), (0, 2)), Epilogue::LeakyRelu(0.1)),
            (2, 33, 8, 8, 40, ((1, 1), (1, 1)), Epilogue::Silu),
            (1, 2, 3, 3, 3, ((0, 0), (0, 0)), Epilogue::Sigmoid),
            // Rows of more than 8 tiles, whose groups of 8 side by side
            // are dealt from whole rows (`gather_row_of_tiles`), next to
            // groups across rows, images and the padding.
            (2, 3, 10, 75, 4, ((1, 1), (1, 1)), Epilogue::None),
            (1, 2, 7, 70, 3, ((0, 0), (2, 1)), Epilogue::Relu),
            // Rows of exactly 8 and 16 tiles: every group inside one row,
            // its patches reaching into the padding on the left, the right,
            // the top and the bottom (dealt from a zero-padded copy).
            (2, 3, 9, 32, 4, ((1, 1), (1, 1)), Epilogue::Relu),
            (1, 2, 6, 62, 3, ((2, 0), (1, 1)), Epilogue::None),
        ];
        for (b, cin, h, w, cout, padding, act) in cases {
            let spec = Conv2dSpec {
                stride: (1, 1),
                padding,
                dilation: (1, 1),
                groups: 1,
            };
            let g = Geom::new(&[b, cin, h, w], &[cout, cin, 3, 3], Some(&[cout]), &spec).unwrap();
            assert!(applies(&g));
            let x = data(b * cin * h * w, 1);
            let wt = data(cout * cin * 9, 2);
            let bias = data(cout, 3);
            let want = super::super::cpu::forward(&g, &x, &wt, Some(&bias), act, 2, None);
            // Both forms of the transform: raw (`gemm`) and, with
            // AVX-512, packed (the runtime's kernel).
            let raw = Transformed::Raw(transform_weight(&wt, cout, cin));
            for u in [raw, Transformed::new(&wt, cout, cin)] {
                let got = forward(&g, &x, u.for_geom(&g).unwrap(), Some(&bias), act);
                assert_eq!(got.len(), want.len());
                let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1.0);
                for (i, (a, e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - e).abs() <= 2e-5 * scale,
                        "case {:?}: element {i}: {a} vs {e}",
                        (b, cin, h, w, cout, padding)
                    );
                }
            }
        }
    }

    #[test]
    fn only_3x3_stride_1_undilated_ungrouped() {
        let geom = |k: usize, s: usize, d: usize, groups: usize| {
            let spec = Conv2dSpec {
                stride: (s, s),
                padding: ((1, 1), (1, 1)),
                dilation: (d, d),
                groups,
            };
            Geom::new(&[1, 4, 9, 9], &[4, 4 / groups, k, k], None, &spec).unwrap()
        };
        assert!(applies(&geom(3, 1, 1, 1)));
        assert!(!applies(&geom(5, 1, 1, 1)));
        assert!(!applies(&geom(3, 2, 1, 1)));
        assert!(!applies(&geom(3, 1, 2, 1)));
        assert!(!applies(&geom(3, 1, 1, 2)));
    }
}
