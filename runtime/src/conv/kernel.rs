//! The convolutions' own matrix product, for CPUs with AVX-512F:
//! `y[r, j] = act(bias[r] + Σ_c W[r, c] · x[c, j])` with the weight packed
//! once (kept by prepared weights, [`PackCache`]) and the right-hand side
//! read where it lies: rows a stride apart, or at a table's offsets
//! ([`Stride`], [`Table`]: the direct lowering's shifted phase planes), and the output's
//! columns all stored or, of wide pixels, each row's first `ow` ([`Cols`]).
//!
//! Why not `gemm`: a convolution's product is `W [cout, K] x col [K, n]`
//! where `col` is either the input itself (1x1) or a patch panel that was
//! just gathered, rows `x_rs` floats apart. `gemm` packs both operands on
//! every call (the whole weight for each tile of pixels), runs its AVX2
//! kernel, and leaves bias and activation to a second pass over the
//! output. On one core, against `gemm` plus that pass, this kernel took
//! 0.72x the time at MobileNetV2's `K` = 32 over 12544 pixels, 0.78-0.94x
//! from `K` = 144 over 3136 pixels to `K` = 576 over 196, 0.97x at 7x7,
//! and 0.92-0.98x on ResNet-18's gathered patches; at 16 to 32 pixels over
//! `K` in the thousands it was 1.1-1.2x slower until the last columns got
//! their own passes (below); every product of a packed weight runs here
//! now.
//!
//! The register tile is 8 output channels by 48 pixels (24 `zmm`
//! accumulators): per input channel, three loads of `x`'s row, eight
//! broadcasts of the packed weight column, 24 FMAs. A row's last partial
//! vector is loaded and stored under a mask, so a tile never reads or
//! writes past its `n` columns. The last 1 to 16 columns of a row (7x7 is
//! 48 + 1, 14x14 is 4 x 48 + 4, Winograd over 14x14 is 16 tiles) take
//! their own passes over several row blocks at once: up to 8 columns with
//! the output channels in the lanes ([`columns`]), 9 to 16 as one vector
//! for three row blocks ([`tall`]). `K` is cut into chunks of [`KC`] so that a
//! chunk of the right-hand side (`KC` x `n`) stays in L2 while the weight
//! blocks pass over it; the accumulators of a later chunk start from the
//! output written by the earlier ones, and bias and activation are
//! applied, in registers, by the last.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::geom::Geom;
#[cfg(target_arch = "x86_64")]
use super::math::epilogue;
#[cfg(target_arch = "x86_64")]
use super::Epilogue;

/// Output channels per register tile (and per packed weight block).
pub(super) const MR: usize = 8;
/// Pixels per full register tile: three vectors.
#[cfg(target_arch = "x86_64")]
const NR: usize = 48;
/// Rows of the right-hand side per chunk: 512 x 48 pixels is 96 KiB.
#[cfg(target_arch = "x86_64")]
const KC: usize = 512;
/// Input channels ahead of the current one whose packed weights a row
/// block's first tile prefetches (4 KiB). A weight is read from memory by its row
/// block's first tile; ResNet-18's 7x7 layers (9.4 MB each, read once per
/// forward) waited on it: one such layer with four weights in turn (as in
/// the network) 1.22-1.37 -> 1.09-1.15 ms; 64 and 256 ahead measured the
/// same, 3x3 layers over 56x56 and 1x1 layers even.
#[cfg(target_arch = "x86_64")]
const PF: usize = 128;
/// The widest last columns of a row that [`columns`] computes.
#[cfg(target_arch = "x86_64")]
const COLUMNS: usize = 8;

/// A convolution weight `[groups · m, k]` packed for [`product`]: per group,
/// blocks of [`MR`] rows, each `k` columns of `MR` consecutive floats (the
/// eight broadcasts of one input channel read one 32-byte line), zero past
/// `m`.
#[derive(Clone, Debug)]
pub(super) struct Packed {
    data: Vec<f32>,
    /// Where the packing starts in `data`: a cache line's start.
    off: usize,
    groups: usize,
    m: usize,
    k: usize,
}

impl Packed {
    /// Packs the weight `w` of the convolution `g` (`groups` row blocks of
    /// `cout_g x K`, row-major).
    pub(super) fn of(w: &[f32], g: &Geom) -> Packed {
        Packed::new(w, g.groups, g.cout_g, g.k())
    }

    /// Whether this is the packing of a weight of `g`'s sizes.
    pub(super) fn fits(&self, g: &Geom) -> bool {
        self.fits_matrices(g.groups, g.cout_g, g.k())
    }

    /// Whether this is the packing of `groups` matrices of `m x k`.
    pub(super) fn fits_matrices(&self, groups: usize, m: usize, k: usize) -> bool {
        (self.groups, self.m, self.k) == (groups, m, k)
    }

    /// Packs `w` (`groups` row blocks of `m x k`, row-major).
    pub(super) fn new(w: &[f32], groups: usize, m: usize, k: usize) -> Packed {
        let per_group = m.div_ceil(MR) * k * MR;
        let mut data = Vec::new();
        // From a cache line's start: each step's eight weights are then
        // one 32-byte half line, never split across two.
        let packed = super::cpu::aligned(&mut data, groups * per_group);
        let start = packed.as_ptr() as usize;
        for (wg, dg) in w.chunks(m * k).zip(packed.chunks_exact_mut(per_group)) {
            crate::rnn_kernel::pack_panels(wg, m, k, MR, dg);
        }
        let off = (start - data.as_ptr() as usize) / 4;
        Packed {
            data,
            off,
            groups,
            m,
            k,
        }
    }

    /// Group `g`'s block `b`: `k x MR` floats.
    #[cfg(target_arch = "x86_64")]
    fn block(&self, g: usize, b: usize) -> &[f32] {
        let blocks = self.m.div_ceil(MR);
        &self.data[self.off + (g * blocks + b) * self.k * MR..][..self.k * MR]
    }
}

/// A prepared convolution's packed weight, made by the first call that
/// runs the packed product (with that call's geometry: the groups are not
/// known before) and kept with the prepared weights, so inference packs
/// each weight once. Packing for every call cost MobileNetV2 b1 more than
/// the kernel saved (1.08x the time of `gemm`'s lowering; 0.87x with the
/// packing kept).
#[derive(Debug, Default)]
pub(crate) struct PackCache(OnceLock<Packed>);

impl PackCache {
    /// The packing of `w` for `g`: made on the first call; `None` if an
    /// earlier call packed it for other sizes.
    pub(super) fn get(&self, w: &[f32], g: &Geom) -> Option<&Packed> {
        Some(self.0.get_or_init(|| Packed::of(w, g))).filter(|p| p.fits(g))
    }
}

/// `y[r, j] = act(bias[r] + Σ_c W[r0 + r, c] x[c, j])` for `r < rows`,
/// `j < n`, with `W` group `g` of `w` and `bias` the `rows` values from
/// `r0` (`r0` a multiple of [`MR`]). Row `c` of `x` starts where `at`
/// puts it ([`Stride`], [`Table`]), rows of `y` are `y_rs` floats apart
/// and its columns are `cols`; `y` may be uninitialised: every element of
/// its `rows x n` that `cols` stores is written.
///
/// # Safety
/// The CPU has AVX-512F; `x` covers `w.k` rows of `n` floats where `at`
/// puts them (a table has `w.k` offsets), and `y` `rows` rows of `n`
/// floats at its stride; `r0 + rows <= w.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn product<R: RowAt>(
    w: &Packed,
    g: usize,
    rc: (usize, usize),
    x: (*const f32, R),
    n: usize,
    y: (*mut f32, usize, Cols),
    bias: Option<&[f32]>,
    act: Epilogue,
) {
    // Each addressing (`R`) and each store mode is its own instantiation:
    // with the store mode decided at run time inside a tile, its
    // accumulators were spilled in the loop over `K` (VGG-16's Winograd
    // products, which store every column, ran 1.08x slower).
    match y.2 {
        Cols::Dense => product_at::<R, false>(w, g, rc, x, n, y, bias, act),
        Cols::Wide { .. } => product_at::<R, true>(w, g, rc, x, n, y, bias, act),
    }
}

/// [`product`] with the rows of `x` where `at` puts them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn product_at<R: RowAt, const WIDE: bool>(
    w: &Packed,
    g: usize,
    (r0, rows): (usize, usize),
    (x, at): (*const f32, R),
    n: usize,
    (y, y_rs, cols): (*mut f32, usize, Cols),
    bias: Option<&[f32]>,
    act: Epilogue,
) {
    let k = w.k;
    // The activations applied in registers; any other is applied to the
    // finished rows afterwards (with the bias already added).
    let fused = fused(act);
    let in_regs = if fused { act } else { Epilogue::None };
    // The last columns when [`columns`] takes them: copied per chunk into
    // `narrow`, `tail` floats per input channel, so that each row block
    // reads them from one line per 16 / `tail` channels instead of one line
    // per channel.
    let tail = match n % NR {
        t @ 1..=16 => t,
        _ => 0,
    };
    let narrow_tail = (1..=COLUMNS).contains(&tail);
    // Not zeroed (16 KiB per call): each chunk writes the `kc x tail`
    // floats that `columns` then reads.
    let mut narrow = std::mem::MaybeUninit::<[f32; KC * COLUMNS]>::uninit();
    let narrow_ptr = narrow.as_mut_ptr().cast::<f32>();
    let blocks = rows.div_ceil(MR);
    let mut k0 = 0;
    loop {
        let kc = KC.min(k - k0);
        let chunk = Chunk {
            first: k0 == 0,
            last: k0 + kc == k,
            act: in_regs,
            cols,
        };
        let (xk, offs) = at.chunk(x, k0);
        if narrow_tail {
            for c in 0..kc {
                let src = offs.row(xk, c).add(n - tail);
                for p in 0..tail {
                    narrow_ptr.add(c * tail + p).write(*src.add(p));
                }
            }
        }
        let tile_at = |b: usize, j: usize| Tile {
            k: kc,
            w: w.block(g, r0 / MR + b)[k0 * MR..].as_ptr(),
            x: (xk.add(j), offs),
            y: (y.add(b * MR * y_rs), y_rs),
            j,
            rows: MR.min(rows - b * MR),
            bias: block_bias(bias, rows, b),
        };
        // `$body` with `F` the const `$first`: a tile that starts a row
        // (the first to read its block's weights) prefetches them.
        macro_rules! fetching {
            ($first:expr, $body:expr) => {
                if $first {
                    const F: bool = true;
                    $body
                } else {
                    const F: bool = false;
                    $body
                }
            };
        }
        for b in 0..blocks {
            // Full tiles of 48, then one of 2 or 3 vectors whose last is
            // masked; 16 columns or fewer are left to the passes below.
            let mut j = 0;
            while n - j >= NR {
                let t = tile_at(b, j);
                fetching!(j == 0, tile::<3, F, R, WIDE>(&t, u16::MAX, &chunk));
                j += NR;
            }
            let t = tile_at(b, j);
            let mask = |from: usize| super::cpu::bits(n - j - from);
            match n - j {
                33.. => fetching!(j == 0, tile::<3, F, R, WIDE>(&t, mask(32), &chunk)),
                17.. => fetching!(j == 0, tile::<2, F, R, WIDE>(&t, mask(16), &chunk)),
                _ => {}
            }
        }
        // The last 1 to 16 columns, several row blocks at a time (each
        // output's sum in the same order as in a full tile, so that results
        // do not depend on where the threads' tiles end).
        let j = n - tail;
        let narrow_at = |b: usize| {
            let t = tile_at(b, j);
            Tile {
                x: (narrow_ptr.cast_const(), Stride(tail)),
                k: t.k,
                w: t.w,
                y: t.y,
                j: t.j,
                rows: t.rows,
                bias: t.bias,
            }
        };
        let c = &chunk;
        // `P` last columns, `B` row blocks at a time (then one at a time).
        macro_rules! narrow {
            ($p:literal, $b:literal) => {
                in_groups::<$b, Stride>(
                    blocks,
                    narrow_at,
                    |t| columns::<$p, $b, Stride>(t, c),
                    |t| columns::<$p, 1, Stride>(t, c),
                )
            };
        }
        match tail {
            1 => narrow!(1, 8),
            2 => narrow!(2, 4),
            3 => narrow!(3, 2),
            4 => narrow!(4, 2),
            5 => narrow!(5, 1),
            6 => narrow!(6, 1),
            7 => narrow!(7, 1),
            8 => narrow!(8, 1),
            // A whole row of 9 to 16 reads the weights first (as a full
            // tile does): it prefetches them.
            9..=16 => {
                let mask = super::cpu::bits(tail);
                fetching!(
                    j == 0,
                    in_groups::<TALL, R>(
                        blocks,
                        |b| tile_at(b, j),
                        |t| tall::<TALL, F, R, WIDE>(t, mask, c),
                        |t| tall::<1, F, R, WIDE>(t, mask, c),
                    )
                )
            }
            _ => {}
        }
        k0 += kc;
        if k0 >= k {
            break;
        }
    }
    if !fused {
        let n = cols.written(n);
        for r in 0..rows {
            epilogue(act, 0.0, std::slice::from_raw_parts_mut(y.add(r * y_rs), n));
        }
    }
}

/// Which of a product's columns are output, and where they go.
#[derive(Clone, Copy, Debug)]
pub(super) enum Cols {
    /// Column `j` is output column `j`.
    Dense,
    /// The direct lowering's wide pixels: column `j` is pixel `(j / wq, j
    /// % wq)` of a plane `ow` wide, stored at `(j / wq) ow + j % wq` when
    /// `j % wq < ow` and dropped otherwise (the columns past each row).
    Wide { wq: usize, ow: usize },
}

#[cfg(target_arch = "x86_64")]
impl Cols {
    /// Output columns among the first `n`.
    fn written(self, n: usize) -> usize {
        match self {
            Cols::Dense => n,
            Cols::Wide { wq, ow } => n / wq * ow + (n % wq).min(ow),
        }
    }

    /// Of the 16 columns from `j` under `mask`: those that are output,
    /// and where they are stored.
    #[inline(always)]
    fn lanes(self, j: usize, mask: u16) -> Lanes {
        let Cols::Wide { wq, ow } = self else {
            return Lanes {
                mask,
                at: j,
                gap: false,
            };
        };
        let (mut row, mut col) = (j / wq, j % wq);
        let (mut kept, mut first) = (0u16, None);
        for l in 0..16 {
            if mask >> l & 1 == 1 && col < ow {
                kept |= 1 << l;
                first.get_or_insert(row * ow + col);
            }
            col += 1;
            if col == wq {
                (row, col) = (row + 1, 0);
            }
        }
        let low = kept.trailing_zeros() as usize;
        let gap = kept != 0 && (kept >> low).count_ones() != 16 - (kept >> low).leading_zeros();
        match first {
            // Lanes in one run are stored as they lie, from lane 0's
            // place: a compressing store is several times slower.
            Some(at) if !gap => Lanes {
                mask: kept,
                at: at.wrapping_sub(low),
                gap,
            },
            Some(at) => Lanes {
                mask: kept,
                at,
                gap,
            },
            None => Lanes {
                mask: 0,
                at: 0,
                gap: false,
            },
        }
    }

    /// Where column `j` is stored, if it is output.
    #[inline(always)]
    fn at(self, j: usize) -> Option<usize> {
        match self {
            Cols::Dense => Some(j),
            Cols::Wide { wq, ow } => (j % wq < ow).then_some(j / wq * ow + j % wq),
        }
    }

    /// The lanes of `l` from `y` ([`Self::lanes`]); `WIDE` false: `l`
    /// has no gap.
    #[inline(always)]
    unsafe fn load<const WIDE: bool>(l: Lanes, y: *const f32) -> __m512 {
        if WIDE && l.gap {
            _mm512_maskz_expandloadu_ps(l.mask, y.add(l.at))
        } else {
            _mm512_maskz_loadu_ps(l.mask, y.wrapping_add(l.at))
        }
    }

    /// Stores the lanes of `l` of `z` into `y`; `WIDE` false: `l` has no
    /// gap.
    #[inline(always)]
    unsafe fn store<const WIDE: bool>(l: Lanes, y: *mut f32, z: __m512) {
        if WIDE && l.gap {
            _mm512_mask_compressstoreu_ps(y.add(l.at).cast(), l.mask, z)
        } else {
            _mm512_mask_storeu_ps(y.wrapping_add(l.at), l.mask, z)
        }
    }
}

/// The output lanes of 16 columns ([`Cols::lanes`]): with a `gap`
/// (columns dropped between two rows), the lanes of `mask` are stored one
/// after the other from `at`; else lane `l` at `at + l`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Lanes {
    mask: u16,
    at: usize,
    gap: bool,
}

#[cfg(target_arch = "x86_64")]
impl Lanes {
    /// [`Cols::lanes`]; with `WIDE` false, the columns are dense.
    #[inline(always)]
    fn of<const WIDE: bool>(cols: Cols, j: usize, mask: u16) -> Lanes {
        if WIDE {
            cols.lanes(j, mask)
        } else {
            Lanes {
                mask,
                at: j,
                gap: false,
            }
        }
    }
}

/// Row block `b`'s bias (zero past `rows`, or without a bias).
#[cfg(target_arch = "x86_64")]
fn block_bias(bias: Option<&[f32]>, rows: usize, b: usize) -> [f32; MR] {
    let mut lane_bias = [0.0f32; MR];
    if let Some(bias) = bias {
        let here = MR.min(rows - b * MR);
        lane_bias[..here].copy_from_slice(&bias[b * MR..][..here]);
    }
    lane_bias
}

/// Where row `c` of a product's right-hand side `x` is, given its first
/// row's pointer.
#[cfg(target_arch = "x86_64")]
pub(super) trait RowAt: Copy {
    /// Row `c`.
    unsafe fn row(self, x: *const f32, c: usize) -> *const f32;
    /// The first row of chunk `k0` of `x`, and its rows.
    unsafe fn chunk(self, x: *const f32, k0: usize) -> (*const f32, Self);
}

/// Rows a stride apart (a patch panel, or the input of a 1x1
/// convolution).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Stride(pub(super) usize);

/// Row `c` at the table's offset `c` (the direct lowering: row `(ci, ky,
/// kx)` of the patches is the input plane itself, shifted).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Table(pub(super) *const usize);

#[cfg(target_arch = "x86_64")]
impl RowAt for Stride {
    #[inline(always)]
    unsafe fn row(self, x: *const f32, c: usize) -> *const f32 {
        x.add(c * self.0)
    }
    #[inline(always)]
    unsafe fn chunk(self, x: *const f32, k0: usize) -> (*const f32, Self) {
        (x.add(k0 * self.0), self)
    }
}

#[cfg(target_arch = "x86_64")]
impl RowAt for Table {
    #[inline(always)]
    unsafe fn row(self, x: *const f32, c: usize) -> *const f32 {
        x.add(*self.0.add(c))
    }
    #[inline(always)]
    unsafe fn chunk(self, x: *const f32, k0: usize) -> (*const f32, Self) {
        (x, Table(self.0.add(k0)))
    }
}

/// Row blocks that [`tall`] computes at once.
#[cfg(target_arch = "x86_64")]
const TALL: usize = 3;

/// One vector of 16 columns (the last under `mask`) for `B` row blocks
/// that share `x` (`ts[0].x`): 8 x `B` accumulators.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tall<const B: usize, const FETCH: bool, R: RowAt, const WIDE: bool>(
    ts: &[Tile<R>; B],
    mask: u16,
    chunk: &Chunk,
) {
    let (x, offs) = ts[0].x;
    let lanes = Lanes::of::<WIDE>(chunk.cols, ts[0].j, mask);
    let mut acc = [[_mm512_setzero_ps(); MR]; B];
    if !chunk.first {
        for b in 0..B {
            let (y, y_rs) = ts[b].y;
            for r in 0..MR {
                if r < ts[b].rows {
                    acc[b][r] = Cols::load::<WIDE>(lanes, y.add(r * y_rs));
                }
            }
        }
    }
    for c in 0..ts[0].k {
        let xv = _mm512_maskz_loadu_ps(mask, offs.row(x, c));
        for b in 0..B {
            let wc = ts[b].w.add(c * MR);
            if FETCH {
                _mm_prefetch::<_MM_HINT_T0>(wc.wrapping_add(PF * MR) as *const i8);
            }
            for r in 0..MR {
                acc[b][r] = _mm512_fmadd_ps(_mm512_set1_ps(*wc.add(r)), xv, acc[b][r]);
            }
        }
    }
    for b in 0..B {
        let (y, y_rs) = ts[b].y;
        for r in 0..MR {
            if r >= ts[b].rows {
                continue;
            }
            let mut z = acc[b][r];
            if chunk.last {
                z = in_registers(z, ts[b].bias[r], chunk.act);
            }
            Cols::store::<WIDE>(lanes, y.add(r * y_rs), z);
        }
    }
}

/// Which chunk of `K` a tile computes.
#[cfg(target_arch = "x86_64")]
struct Chunk {
    /// The accumulators start at zero (else at the output).
    first: bool,
    /// Bias and `act` are applied before the store.
    last: bool,
    act: Epilogue,
    cols: Cols,
}

/// One register tile's operands.
#[cfg(target_arch = "x86_64")]
struct Tile<R> {
    k: usize,
    /// `k x MR` packed weights.
    w: *const f32,
    /// The tile's first pixel of the chunk's first row of `x`, and where
    /// its rows are.
    x: (*const f32, R),
    /// The row block's first output row, and the stride of its rows.
    y: (*mut f32, usize),
    /// The tile's first column.
    j: usize,
    /// Rows stored (the rest of the block is zero weight).
    rows: usize,
    /// The block's bias (zero past `rows`).
    bias: [f32; MR],
}

/// `NV` vectors of 16 pixels, the last under `last_mask`.
///
/// Written with index loops over constant bounds only: with iterators
/// (`iter_mut().zip(..)`, or a loop bounded by `t.rows`) the accumulators
/// were kept on the stack, every FMA's result stored back, and the kernel
/// ran at half `gemm`'s speed.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const NV: usize, const FETCH: bool, R: RowAt, const WIDE: bool>(
    t: &Tile<R>,
    last_mask: u16,
    chunk: &Chunk,
) {
    let (x, offs) = t.x;
    let (y, y_rs) = t.y;
    let mut mask = [u16::MAX; NV];
    mask[NV - 1] = last_mask;
    let lanes: [Lanes; NV] =
        std::array::from_fn(|v| Lanes::of::<WIDE>(chunk.cols, t.j + 16 * v, mask[v]));
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    if !chunk.first {
        for r in 0..MR {
            if r < t.rows {
                for v in 0..NV {
                    acc[r][v] = Cols::load::<WIDE>(lanes[v], y.add(r * y_rs));
                }
            }
        }
    }
    for c in 0..t.k {
        let row = offs.row(x, c);
        let mut xv = [_mm512_setzero_ps(); NV];
        for v in 0..NV {
            xv[v] = _mm512_maskz_loadu_ps(mask[v], row.add(16 * v));
        }
        let wc = t.w.add(c * MR);
        // Only a row block's first tile reads the weights from memory.
        // Past the block's end it fetches the next block's start (never
        // read through: a prefetch does not fault).
        if FETCH {
            _mm_prefetch::<_MM_HINT_T0>(wc.wrapping_add(PF * MR) as *const i8);
        }
        for r in 0..MR {
            let wv = _mm512_set1_ps(*wc.add(r));
            for v in 0..NV {
                acc[r][v] = _mm512_fmadd_ps(wv, xv[v], acc[r][v]);
            }
        }
    }
    for r in 0..MR {
        if r >= t.rows {
            continue;
        }
        for v in 0..NV {
            let mut z = acc[r][v];
            if chunk.last {
                z = in_registers(z, t.bias[r], chunk.act);
            }
            Cols::store::<WIDE>(lanes[v], y.add(r * y_rs), z);
        }
    }
}

/// The last `P` (1 to [`COLUMNS`]) columns of `B` row blocks, with each
/// block's eight output channels in the lanes of one `ymm` per column:
/// per input channel one load of each block's packed weights (the eight
/// channels' column), `P` broadcasts of `x` (copied to `narrow` rows of
/// `P` floats) and `P x B` FMAs. The one-vector tile spends eight FMAs per
/// input channel whatever its width, so a row of 49 pixels (7x7) took
/// 1.7x the time of one of 48 (1.2x with this). Each output is one chain
/// of FMAs over `K`, as in [`tile`]; `B` blocks give the `P x B` chains
/// that hide the FMA's latency.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn columns<const P: usize, const B: usize, R: RowAt>(ts: &[Tile<R>; B], chunk: &Chunk) {
    let (x, offs) = ts[0].x;
    let mut acc = [[_mm256_setzero_ps(); P]; B];
    if !chunk.first {
        for b in 0..B {
            let (y, y_rs) = ts[b].y;
            for p in 0..P {
                let mut col = [0.0f32; MR];
                let Some(at) = chunk.cols.at(ts[b].j + p) else {
                    continue;
                };
                for r in 0..MR {
                    if r < ts[b].rows {
                        col[r] = *y.add(r * y_rs + at);
                    }
                }
                acc[b][p] = _mm256_loadu_ps(col.as_ptr());
            }
        }
    }
    for c in 0..ts[0].k {
        let row = offs.row(x, c);
        for b in 0..B {
            let wv = _mm256_loadu_ps(ts[b].w.add(c * MR));
            for p in 0..P {
                acc[b][p] = _mm256_fmadd_ps(wv, _mm256_set1_ps(*row.add(p)), acc[b][p]);
            }
        }
    }
    for b in 0..B {
        let (y, y_rs) = ts[b].y;
        let bias = _mm256_loadu_ps(ts[b].bias.as_ptr());
        for p in 0..P {
            let mut z = acc[b][p];
            if chunk.last {
                let zz = _mm512_castps256_ps512(_mm256_add_ps(z, bias));
                z = _mm512_castps512_ps256(activate(zz, chunk.act));
            }
            let mut col = [0.0f32; MR];
            _mm256_storeu_ps(col.as_mut_ptr(), z);
            let Some(at) = chunk.cols.at(ts[b].j + p) else {
                continue;
            };
            for r in 0..MR {
                if r < ts[b].rows {
                    *y.add(r * y_rs + at) = col[r];
                }
            }
        }
    }
}

/// Runs `many` on row blocks `B` at a time (`at(b)` is block `b`'s tile),
/// then `one` on each block left.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn in_groups<const B: usize, R: RowAt>(
    blocks: usize,
    at: impl Fn(usize) -> Tile<R>,
    many: impl Fn(&[Tile<R>; B]),
    one: impl Fn(&[Tile<R>; 1]),
) {
    let mut b = 0;
    while b + B <= blocks {
        many(&std::array::from_fn(|i| at(b + i)));
        b += B;
    }
    while b < blocks {
        one(&[at(b)]);
        b += 1;
    }
}

/// Whether [`in_registers`] applies `act` itself; the callers apply any
/// other to the finished output (with the bias already added).
#[cfg(target_arch = "x86_64")]
pub(super) fn fused(act: Epilogue) -> bool {
    matches!(
        act,
        Epilogue::None | Epilogue::Relu | Epilogue::Relu6 | Epilogue::LeakyRelu(_)
    )
}

/// `act(z + bias)` for the activations that are one or two vector
/// instructions ([`fused`]); `z + bias` for the others.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn in_registers(z: __m512, bias: f32, act: Epilogue) -> __m512 {
    activate(_mm512_add_ps(z, _mm512_set1_ps(bias)), act)
}

/// `act(z)` for the activations [`in_registers`] applies; `z` for others.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn activate(z: __m512, act: Epilogue) -> __m512 {
    let zero = _mm512_setzero_ps();
    match act {
        Epilogue::Relu => _mm512_max_ps(z, zero),
        Epilogue::Relu6 => _mm512_min_ps(_mm512_max_ps(z, zero), _mm512_set1_ps(6.0)),
        Epilogue::LeakyRelu(s) => {
            let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(z, zero);
            _mm512_mask_blend_ps(pos, _mm512_mul_ps(z, _mm512_set1_ps(s)), z)
        }
        _ => z,
    }
}

/// Test inputs in `[-0.5, 0.5)` from a linear congruential generator
/// seeded with `seed` (the kernel's and the direct lowering's tests).
#[cfg(test)]
pub(super) fn test_values(mut seed: u32) -> impl FnMut() -> f32 {
    move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// A kept packing is made once and only given to calls of its sizes:
    /// the same weight read as two groups is not handed the packing made
    /// for one.
    #[test]
    fn a_kept_packing_is_only_reused_for_its_sizes() {
        let w: Vec<f32> = (0..16 * 4 * 9).map(|i| i as f32).collect();
        let spec = crate::conv::Conv2dSpec::default();
        let one = Geom::new(&[1, 4, 5, 5], &[16, 4, 3, 3], None, &spec).unwrap();
        let two_spec = crate::conv::Conv2dSpec { groups: 2, ..spec };
        let two = Geom::new(&[1, 8, 5, 5], &[16, 4, 3, 3], None, &two_spec).unwrap();
        let cache = PackCache::default();
        let first = cache.get(&w, &one).map(|p| p as *const Packed);
        assert!(first.is_some());
        assert_eq!(cache.get(&w, &one).map(|p| p as *const Packed), first);
        assert!(cache.get(&w, &two).is_none());
        // The packing itself: row r, column c at block r / 8, lane r % 8.
        let p = Packed::of(&w, &one);
        assert_eq!(p.block(0, 1)[5 * MR + 3], w[11 * 36 + 5]);
    }

    /// Every tile shape (full tiles, 1 to 3 vectors with a masked last,
    /// last columns of 1 to 8 with the channels in the lanes, one vector
    /// for three row blocks at once),
    /// partial row blocks, chunks of `K` past [`KC`], strided operands and
    /// each in-register activation against the definition.
    #[test]
    fn product_equals_the_definition() {
        if !crate::rnn_kernel::has_avx512() {
            return;
        }
        let mut rand = test_values(7);
        let acts = [
            Epilogue::None,
            Epilogue::Relu,
            Epilogue::Relu6,
            Epilogue::LeakyRelu(0.1),
            Epilogue::Sigmoid,
        ];
        for (i, &(groups, m, k, n)) in [
            (1, 8, 3, 48),
            (1, 13, 16, 97),
            (2, 5, 9, 17),
            (1, 20, 1100, 40),
            (3, 16, 30, 1),
            (1, 9, 600, 130),
            (1, 20, 1031, 53),
            (1, 12, 1031, 100),
            (2, 8, 7, 8),
            (1, 3, 5, 54),
            (1, 16, 514, 7),
            (1, 40, 530, 13),
            (1, 33, 20, 64),
            (1, 30, 9, 9),
        ]
        .iter()
        .enumerate()
        {
            let act = acts[i % acts.len()];
            let w: Vec<f32> = (0..groups * m * k).map(|_| rand()).collect();
            let (x_rs, y_rs) = (n + 3, n + 5);
            let x: Vec<f32> = (0..k * x_rs).map(|_| rand() * 4.0).collect();
            let bias: Vec<f32> = (0..groups * m).map(|_| rand()).collect();
            let packed = Packed::new(&w, groups, m, k);
            for g in 0..groups {
                // Rows from the second block when there is one.
                let r0 = if m > MR { MR } else { 0 };
                let rows = m - r0;
                let mut y = vec![f32::NAN; rows * y_rs];
                let b = &bias[g * m + r0..][..rows];
                // SAFETY: AVX-512F checked above; the buffers have the
                // strides and sizes passed.
                unsafe {
                    product(
                        &packed,
                        g,
                        (r0, rows),
                        (x.as_ptr(), Stride(x_rs)),
                        n,
                        (y.as_mut_ptr(), y_rs, Cols::Dense),
                        Some(b),
                        act,
                    )
                };
                for r in 0..rows {
                    for j in 0..n {
                        let mut z = b[r] as f64;
                        for c in 0..k {
                            z += w[(g * m + r0 + r) * k + c] as f64 * x[c * x_rs + j] as f64;
                        }
                        let mut want = [z as f32];
                        epilogue(act, 0.0, &mut want);
                        let got = y[r * y_rs + j];
                        assert!(
                            (got - want[0]).abs() <= 1e-4 * (1.0 + want[0].abs()),
                            "case {i} group {g} row {r} col {j}: {got} vs {}",
                            want[0]
                        );
                    }
                    // Nothing past the row's n columns is written.
                    assert!(y[r * y_rs + n..(r + 1) * y_rs].iter().all(|v| v.is_nan()));
                }
            }
        }
    }
}
