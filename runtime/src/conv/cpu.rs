//! The f32 forward pass on the CPU.
//!
//! Five lowerings, chosen from the shapes ([`Lowering::of`]):
//!
//! - **general**: the output of each image is cut into tiles of `pt`
//!   consecutive output pixels. For one tile, the patches are gathered into a
//!   panel `col [K, pt]` (`K = cin_g * kh * kw`, row `(ci, ky, kx)`), sized
//!   so it stays in L2, and `y[:, tile] = W [cout_g, K] x col` is one
//!   product per group, written straight into the NCHW output: with
//!   AVX-512 the runtime's own kernel on the packed weight, bias and
//!   activation applied in registers ([`super::kernel`]); else one `gemm`
//!   call, the epilogue run on the `cout_g x pt` result right after, while
//!   it is in cache.
//! - **pointwise** (1x1, stride 1, no padding): the same tiles, with the
//!   input itself as the right-hand matrix: no copy at all.
//! - **wide** (stride 1, output rows of at most 32 pixels, few output
//!   channels per group): the product over the padded input's whole width,
//!   each patch row one contiguous copy, the columns past each output row
//!   dropped ([`Wide`]).
//! - **direct** (with AVX-512; strided layers, and stride-1 ones whose
//!   extra columns are few): no patches at all. Each image's input is
//!   split once into its zero-padded stride phases, and the packed kernel
//!   reads each patch row as a shifted phase plane, storing each output
//!   row's valid columns ([`direct`]).
//! - **depthwise** (one input channel per group, and a single input
//!   channel's convolution whose rows are too long for the wide
//!   lowering): with AVX-512 at horizontal stride 1 or 2 (with AVX2, an
//!   undilated 3x3 kernel at stride 1 or 2), each plane computed from the
//!   input plane in place ([`super::depthwise`]); else per
//!   output plane, the input plane zero-padded once (split into stride phases),
//!   then blocks of 4 rows x 16 columns that sum every kernel tap in
//!   registers and are stored once.
//!
//! Work is split over (image, tile), (image, tile, channel block) or
//! (image, channel) jobs on the pool of [`super::threads`]; each job runs
//! its product single-threaded and writes a disjoint part of the output.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use super::geom::Geom;
use super::kernel::{PackCache, Packed, MR};
use super::math::{epilogue, epilogue_inline, simd};
use super::Epilogue;

#[cfg(target_arch = "x86_64")]
mod direct;
#[cfg(target_arch = "x86_64")]
use direct::Direct;

/// Floats of patch panel per tile: 96K floats = 384 KiB, well inside the
/// L2 of one core (1 MiB on the development machine, 512 KiB on older
/// server parts) next to the weight panel `gemm` packs.
const PANEL_FLOATS: usize = 96 * 1024;

/// Floats in a 64-byte cache line.
pub(super) const LINE: usize = 16;

/// `len` floats of `v` from its first 64-byte boundary, `v` grown (with
/// zeros) to hold them. A vector load that straddles two cache lines costs
/// two: the matrix kernel reads a row of its right-hand side per step,
/// and on a panel 16 bytes off the line (where glibc's `malloc` puts large
/// blocks) a 1x1 product ran at 0.85x the rate of an aligned one. So
/// every scratch buffer the kernels read is used from a line boundary; a
/// buffer kept between calls keeps its offset.
pub(super) fn aligned(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len + LINE - 1 {
        v.resize(len + LINE - 1, 0.0);
    }
    let o = v.as_ptr().align_offset(64);
    let o = if o < LINE { o } else { 0 };
    &mut v[o..o + len]
}

/// A raw pointer that jobs may share because each writes a disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub *mut f32);
// SAFETY: used only for writes to disjoint regions, see each use.
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    pub fn ptr(&self) -> *mut f32 {
        self.0
    }

    /// # Safety
    /// `off..off + len` must be inside the allocation and not touched by any
    /// other job meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, off: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(off), len)
    }
}

/// `dst (m x n, row stride dst_rs) = lhs (m x k) * rhs (k x n)`, all with
/// unit column stride except where given; `acc` adds to `dst`.
///
/// # Safety
/// The pointers must cover the described matrices.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    acc: bool,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
) {
    matmul_par(
        Parallelism::None,
        (m, n, k),
        (dst, dst_rs, acc),
        (lhs, lhs_rs, lhs_cs),
        (rhs, rhs_rs, rhs_cs),
    )
}

/// [`matmul`] with the given parallelism (the filters' banded products run
/// it across threads): `(m, n, k)`, `(dst, row stride, accumulate)`, and
/// each operand as `(pointer, row stride, column stride)`.
///
/// # Safety
/// The pointers must cover the described matrices.
pub(crate) unsafe fn matmul_par(
    par: Parallelism,
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs, acc): (*mut f32, usize, bool),
    (lhs, lhs_rs, lhs_cs): (*const f32, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        acc,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        par,
    )
}

/// Output-pixel tile length for the matmul lowerings: the panel fits
/// [`PANEL_FLOATS`], and each image has at least `want` tiles when it
/// allows it (four jobs per thread keep every thread busy). A multiple of 16
/// pixels (or the whole plane): the product's tile columns are the matrix
/// kernel's rows, 16 at a time, and a tile of 16k + 8 ran its last 8 on
/// the half-width kernel (ResNet-18 b8 on one thread: 314 -> 287 ms with
/// the rounding, AlexNet b8 0.94x).
fn tile_len(g: &Geom, k: usize, want: usize) -> usize {
    let p = g.p();
    let mut tiles = (p * k).div_ceil(PANEL_FLOATS).max(1);
    if tiles < want {
        tiles = want.min(p.div_ceil(16)).max(tiles);
    }
    p.div_ceil(tiles).next_multiple_of(16).min(p)
}

/// Gathers the patches of output pixels `p0..p0 + n` of one group of one
/// image into `col [K, n]` (zeros where the window hits padding).
///
/// `x` is the group's `cin_g` input planes.
pub(super) fn im2col(g: &Geom, x: &[f32], p0: usize, n: usize, col: &mut [f32]) {
    let (hw, taps) = (g.hw(), g.kh * g.kw);
    for ci in 0..g.cin_g {
        im2col_channel(
            g,
            &x[ci * hw..(ci + 1) * hw],
            p0,
            n,
            &mut col[ci * taps * n..(ci + 1) * taps * n],
        );
    }
}

/// The `kh * kw` rows of `col` that come from one input plane.
pub(super) fn im2col_channel(g: &Geom, plane: &[f32], p0: usize, n: usize, col: &mut [f32]) {
    im2col_rows(g, plane, p0, n, col, n);
}

/// [`im2col_channel`] into rows `rs` floats apart: the weight gradient lays
/// several images' patches side by side in one row.
pub(super) fn im2col_rows(
    g: &Geom,
    plane: &[f32],
    p0: usize,
    n: usize,
    col: &mut [f32],
    rs: usize,
) {
    let ow = g.ow;
    for ky in 0..g.kh {
        let (ylo, yhi) = g.rows(ky);
        for kx in 0..g.kw {
            let (xlo, xhi) = g.cols(kx);
            let row = (ky * g.kw + kx) * rs;
            let dst = &mut col[row..row + n];
            // walk the tile one output row at a time
            let mut p = p0;
            while p < p0 + n {
                let oy = p / ow;
                let ox0 = p % ow;
                let ox1 = ow.min(ox0 + (p0 + n - p));
                let seg = &mut dst[p - p0..p - p0 + (ox1 - ox0)];
                if oy < ylo || oy >= yhi {
                    seg.fill(0.0);
                } else {
                    let iy = oy * g.sh + ky * g.dh - g.pt;
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    gather_row(g, src, kx, ox0, ox1, xlo, xhi, seg);
                }
                p += ox1 - ox0;
            }
        }
    }
}

/// `seg[ox - ox0] = src[ox * sw + kx * dw - pl]` for `ox` in `ox0..ox1`,
/// zero outside the valid columns `xlo..xhi`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn gather_row(
    g: &Geom,
    src: &[f32],
    kx: usize,
    ox0: usize,
    ox1: usize,
    xlo: usize,
    xhi: usize,
    seg: &mut [f32],
) {
    let a = xlo.clamp(ox0, ox1);
    let b = xhi.clamp(a, ox1);
    seg[..a - ox0].fill(0.0);
    seg[b - ox0..].fill(0.0);
    if a < b {
        let ix0 = a * g.sw + kx * g.dw - g.pl;
        let out = &mut seg[a - ox0..b - ox0];
        match g.sw {
            1 => copy_row(out, &src[ix0..ix0 + (b - a)]),
            sw => gather_strided(&src[ix0..], out, sw),
        }
    }
}

/// `out.copy_from_slice(src)`, without a call to `memcpy` for a row of up
/// to 16 floats (one masked load and store with AVX-512): LeNet-5's second
/// convolution gathers its patches in rows of 10, and those calls were a
/// tenth of its profile.
#[inline]
fn copy_row(out: &mut [f32], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if out.len() <= 16 && src.len() == out.len() && crate::rnn_kernel::has_avx512() {
            // SAFETY: the CPU has AVX-512F (checked just above); both
            // slices hold `out.len()` floats, which the mask keeps to.
            unsafe { copy_short_avx512(out, src) };
            return;
        }
    }
    out.copy_from_slice(src);
}

/// [`copy_row`] for up to 16 floats.
///
/// # Safety
/// The CPU has AVX-512F; `out` and `src` hold the same number of floats,
/// at most 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn copy_short_avx512(out: &mut [f32], src: &[f32]) {
    use std::arch::x86_64::*;
    let mask = ((1u32 << out.len()) - 1) as __mmask16;
    // SAFETY: the masked lanes are inside both slices (the caller's
    // promise); lanes outside the mask are neither read nor written.
    unsafe {
        let v = _mm512_maskz_loadu_ps(mask, src.as_ptr());
        _mm512_mask_storeu_ps(out.as_mut_ptr(), mask, v);
    }
}

/// The AVX-512 mask of the first `min(n, 16)` lanes.
#[cfg(target_arch = "x86_64")]
pub(super) fn bits(n: usize) -> std::arch::x86_64::__mmask16 {
    lanes(0, n as isize)
}

/// The AVX-512 mask of lanes `l` with `lo <= l < hi`, of 16: the lanes of
/// a 16-float load at column `c` that fall inside a row `0..w` are
/// `lanes(-c, w - c)`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn lanes(lo: isize, hi: isize) -> std::arch::x86_64::__mmask16 {
    let (lo, hi) = (lo.clamp(0, 16), hi.clamp(0, 16));
    if hi <= lo {
        return 0;
    }
    (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
}

/// `out[j] = src[s j]`: a strided convolution's patch row (ResNet's 7x7
/// stride-2 stem and downsampling layers, AlexNet's 11x11 stride-4 stem).
/// With AVX-512 and a stride up to 4, `32 / s` at a time (two loads and
/// one permute) instead of one element at a time.
fn gather_strided(src: &[f32], out: &mut [f32], s: usize) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        if (2..=4).contains(&s) && crate::rnn_kernel::has_avx512() {
            // SAFETY: the CPU has AVX-512F (checked just above).
            done = unsafe { gather_strided_avx512(src, out, s) };
        }
    }
    for (o, &v) in out[done..]
        .iter_mut()
        .zip(src.get(s * done..).unwrap_or_default().iter().step_by(s))
    {
        *o = v;
    }
}

/// [`gather_strided`] for `s` in 2..=4, all of `out` (whole vectors,
/// then masked ones); returns how many outputs it wrote.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_strided_avx512(src: &[f32], out: &mut [f32], s: usize) -> usize {
    use std::arch::x86_64::*;
    // Lane `l < per` takes float `s l` of the 32 loaded.
    let per = (32 / s).min(16);
    let mut lanes = [0i32; 16];
    for (l, v) in lanes.iter_mut().enumerate().take(per) {
        *v = (s * l) as i32;
    }
    // SAFETY: `lanes` holds 16 i32.
    let idx = unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) };
    let mask: __mmask16 = ((1u32 << per) - 1) as __mmask16;
    let mut j = 0;
    while j + per <= out.len() && s * j + 32 <= src.len() {
        // SAFETY: src[s j .. s j + 32] and out[j .. j + per] are inside
        // the slices (the loop's condition); the store writes `per` lanes.
        unsafe {
            let a = _mm512_loadu_ps(src.as_ptr().add(s * j));
            let b = _mm512_loadu_ps(src.as_ptr().add(s * j + 16));
            let v = _mm512_permutex2var_ps(a, idx, b);
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(j), mask, v);
        }
        j += per;
    }
    // The tail: masked loads of what is left of `src`, and stores of the
    // outputs it has. Done element by element it was a third of a
    // stride-2 depthwise layer's padding at 112 columns.
    while j < out.len() {
        let avail = src.len().saturating_sub(s * j);
        let count = per.min(out.len() - j).min(avail.div_ceil(s));
        if count == 0 {
            break;
        }
        // SAFETY: the masks cover src[s j .. s j + min(avail, 32)] and
        // out[j .. j + count]; masked-off lanes are not touched.
        unsafe {
            let a = _mm512_maskz_loadu_ps(bits(avail), src.as_ptr().add(s * j));
            let b =
                _mm512_maskz_loadu_ps(bits(avail.saturating_sub(16)), src.as_ptr().add(s * j + 16));
            let v = _mm512_permutex2var_ps(a, idx, b);
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(j), bits(count), v);
        }
        j += count;
    }
    j
}

/// `y = act(conv(x, w) + bias)` for f32 NCHW data; returns `y` NCHW.
/// `packed` keeps `w`'s packing for the matrix kernel across calls
/// (prepared weights); without it the weight is packed for this call where
/// that pays.
pub(super) fn forward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Epilogue,
    threads: usize,
    packed: Option<&PackCache>,
) -> Vec<f32> {
    let n = g.b * g.cout * g.p();
    // Not zeroed first: every lowering writes every element (a pass of
    // `memset` over every output was 5 % of ResNet-18's forward, 2.5 % of
    // MobileNetV2 b1's for the depthwise output).
    let mut y = Vec::with_capacity(n);
    match Lowering::of(g) {
        Lowering::Depthwise => depthwise(g, x, w, bias, act, &mut y.spare_capacity_mut()[..n]),
        Lowering::Wide => {
            let yp = SyncPtr(y.as_mut_ptr());
            Wide::new(g, threads).run(g, x, w, packed, bias, act, yp)
        }
        #[cfg(target_arch = "x86_64")]
        Lowering::Direct => {
            let product = Product::new(w, g, packed);
            let yp = SyncPtr(y.as_mut_ptr());
            match product.packed.as_deref() {
                Some(pk) => Direct::new(g, threads).run(g, x, pk, bias, act, yp),
                None => matmul_lowering(g, x, w, packed, bias, act, threads, yp),
            }
        }
        Lowering::Matmul => {
            matmul_lowering(g, x, w, packed, bias, act, threads, SyncPtr(y.as_mut_ptr()))
        }
    }
    // SAFETY: each lowering writes all `n` elements: the depthwise one
    // every plane by one `depthwise::plane` or `depthwise_plane` call, the others' jobs every
    // image, tile (or run of rows) and group, each all `cout_g` rows of its
    // pixels.
    unsafe { y.set_len(n) };
    y
}

/// Which lowering [`forward`] runs (the module's list).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Lowering {
    Depthwise,
    #[cfg(target_arch = "x86_64")]
    Direct,
    Wide,
    Matmul,
}

impl Lowering {
    /// A depthwise convolution (more than one group, one input channel
    /// each) takes the depthwise loop: one output channel per group is a
    /// product of one row. Short rows of few channels take the wide
    /// product, which puts several images in one product (LeNet-5 at
    /// batch 256 ran 1.7x slower on the direct lowering, one product per
    /// image). Then the direct lowering where it wins ([`Direct::wins`]),
    /// which needs the packed kernel (AVX-512).
    ///
    /// Without it, a single input channel's convolution (a grayscale
    /// stem) is on the depthwise loop's terms, one plane per output
    /// channel, and the rest gather their patches.
    fn of(g: &Geom) -> Lowering {
        let wide = Wide::wins(g);
        if g.is_depthwise() && g.groups > 1 {
            return Lowering::Depthwise;
        }
        if wide {
            return Lowering::Wide;
        }
        #[cfg(target_arch = "x86_64")]
        if crate::rnn_kernel::has_avx512() && Direct::wins(g) {
            return Lowering::Direct;
        }
        if g.is_depthwise() {
            Lowering::Depthwise
        } else {
            Lowering::Matmul
        }
    }
}

/// The wide lowering of a stride-1 convolution with short output rows
/// (LeNet-5's second layer: rows of 10 pixels).
///
/// The general lowering gathers each patch row one output row at a time:
/// `K * oh` copies of `ow` floats per image, and for a 10-pixel row the
/// copy's overhead is most of its cost. Here the product is computed on
/// the zero-padded input's whole width `wp = ow + dw (kw - 1)`: wide pixel
/// `q = oy * wp + c`, whose patch row `(ci, ky, kx)` is the padded plane
/// read from `ky dh wp + kx dw + q`, so each of a panel's rows is one
/// contiguous copy per image. The `wp - ow` columns past each output row
/// are computed and dropped: with `ow` at 10 and `wp` at 14 the product
/// does 36 % more work, and LeNet-5 at batch 256 still ran in 0.77x its
/// time (see [`Wide::wins`]). Several small images share one panel and one
/// product; large ones are cut into runs of output rows.
struct Wide {
    /// Padded width and rows: `wp = ow + dw (kw - 1)`.
    wp: usize,
    /// Output rows per job, and images per job (more than one only when
    /// a job holds whole images).
    rows: usize,
    imgs: usize,
    /// Jobs per image (`oh.div_ceil(rows)`), images' groups.
    tiles: usize,
    groups: usize,
    /// Whether the input needs a zero-padded copy.
    padded: bool,
}

impl Wide {
    /// Whether the wide lowering beats the general one: stride 1, output
    /// rows of at most 32 pixels, and few output channels per group, so
    /// that the patch gathering, not the product, is what the layer's
    /// time goes to: the extra columns cost `(wp - ow) / ow` more of the
    /// product, which grows with `cout_g`, while the saving is per patch
    /// row. Kept when `(wp - ow) cout_g <= 8 ow`: LeNet-5's second layer
    /// (rows of 10 over 14, 16 channels) 0.77x the network's time at
    /// batch 256; AlexNet's 13x13 layers (384 channels, 15 over 13) and
    /// ResNet-18's 7x7 ones were 1.06x and 1.14x slower with it.
    fn wins(g: &Geom) -> bool {
        if g.sh != 1 || g.sw != 1 || g.is_pointwise() || g.ow > 32 {
            return false;
        }
        let extra = g.dw * (g.kw - 1);
        extra * g.cout_g <= 8 * g.ow
    }

    fn new(g: &Geom, threads: usize) -> Wide {
        let wp = g.ow + g.dw * (g.kw - 1);
        let k = g.k();
        let img = Wide::span(g.oh, wp, g.ow);
        let want = 4 * threads;
        // Whole images per job while a panel holds one and the batch
        // gives every thread enough jobs; else runs of rows.
        let (rows, imgs) = if k * img <= PANEL_FLOATS && g.b >= want {
            let fit = (PANEL_FLOATS / (k * img)).max(1);
            (g.oh, fit.min(g.b / want).max(1))
        } else {
            let by_panel = (k * img).div_ceil(PANEL_FLOATS);
            let tiles = by_panel.max(want.div_ceil(g.b)).min(g.oh);
            (g.oh.div_ceil(tiles), 1)
        };
        Wide {
            wp,
            rows,
            imgs,
            tiles: g.oh.div_ceil(rows),
            groups: g.b.div_ceil(imgs),
            padded: g.pt > 0 || g.pl > 0 || wp != g.w || g.oh + g.dh * (g.kh - 1) != g.h,
        }
    }

    /// Wide pixels from the first of `rows` output rows to the last one's
    /// end (the last row's padding columns are not computed).
    fn span(rows: usize, wp: usize, ow: usize) -> usize {
        (rows - 1) * wp + ow
    }

    /// Padded input rows that `rows` output rows read.
    fn src_rows(&self, g: &Geom, rows: usize) -> usize {
        rows + g.dh * (g.kh - 1)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        g: &Geom,
        x: &[f32],
        w: &[f32],
        packed: Option<&PackCache>,
        bias: Option<&[f32]>,
        act: Epilogue,
        yp: SyncPtr,
    ) {
        let (k, p, hw, wp) = (g.k(), g.p(), g.hw(), self.wp);
        let taps = g.kh * g.kw;
        // The longest panel a job holds, its padded copy and its product.
        let most = self.imgs * Wide::span(self.rows, wp, g.ow);
        let pad_len = if self.padded {
            g.cin_g * self.src_rows(g, self.rows) * wp
        } else {
            0
        };
        let bufs = (k + g.cout_g) * most + pad_len;
        let product = Product::new(w, g, packed);
        super::par_jobs(self.groups * self.tiles, g.b * p * g.cout * k).for_each_init(
            || Panel::take(bufs),
            |panel, job| {
                let buf = panel.floats();
                let (ig, t) = (job / self.tiles, job % self.tiles);
                let (b0, b1) = (ig * self.imgs, ((ig + 1) * self.imgs).min(g.b));
                let (r0, r1) = (t * self.rows, ((t + 1) * self.rows).min(g.oh));
                let len = Wide::span(r1 - r0, wp, g.ow);
                let total = (b1 - b0) * len;
                let (col, rest) = buf.split_at_mut(k * total);
                let (out, pad) = rest.split_at_mut(g.cout_g * total);
                let nsrc = self.src_rows(g, r1 - r0);
                for grp in 0..g.groups {
                    for (s, b) in (b0..b1).enumerate() {
                        let xg = &x[(b * g.cin + grp * g.cin_g) * hw..][..g.cin_g * hw];
                        // The rows this job reads, padded or as they are.
                        let (src, plane) = if self.padded {
                            self.fill_padded(g, xg, r0, nsrc, pad);
                            (&pad[..], nsrc * wp)
                        } else {
                            (&xg[r0 * g.w..], hw)
                        };
                        for ci in 0..g.cin_g {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let row = (ci * taps + ky * g.kw + kx) * total + s * len;
                                    let from = ci * plane + ky * g.dh * wp + kx * g.dw;
                                    col[row..row + len].copy_from_slice(&src[from..from + len]);
                                }
                            }
                        }
                    }
                    // SAFETY: `out` holds `cout_g * total` floats, `col`
                    // `k * total`; both are this job's own.
                    unsafe {
                        product.run(
                            grp,
                            (0, g.cout_g),
                            (col.as_ptr(), total, total),
                            (out.as_mut_ptr(), total),
                            None,
                            Epilogue::None,
                        )
                    };
                    for (s, b) in (b0..b1).enumerate() {
                        for co in 0..g.cout_g {
                            let c = b * g.cout + grp * g.cout_g + co;
                            let bv = bias.map_or(0.0, |bs| bs[grp * g.cout_g + co]);
                            // SAFETY: job (images b0..b1, rows r0..r1)
                            // alone writes these rows of image b's output
                            // channels.
                            let dst = unsafe { yp.slice(c * p + r0 * g.ow, (r1 - r0) * g.ow) };
                            let from = &out[co * total + s * len..][..len];
                            for (oy, d) in dst.chunks_exact_mut(g.ow).enumerate() {
                                copy_row(d, &from[oy * wp..oy * wp + g.ow]);
                            }
                            epilogue(act, bv, dst);
                        }
                    }
                }
            },
        );
    }

    /// Copies rows `r0..r0 + n` of the zero-padded planes of one group of
    /// one image into `pad` (`cin_g` planes of `n x wp`).
    fn fill_padded(&self, g: &Geom, xg: &[f32], r0: usize, n: usize, pad: &mut [f32]) {
        let wp = self.wp;
        for ci in 0..g.cin_g {
            let plane = &xg[ci * g.hw()..][..g.hw()];
            for (rr, dst) in pad[ci * n * wp..][..n * wp]
                .chunks_exact_mut(wp)
                .enumerate()
            {
                // Padded row r0 + rr is input row r0 + rr - pt.
                match (r0 + rr).checked_sub(g.pt).filter(|&iy| iy < g.h) {
                    Some(iy) => window(&plane[iy * g.w..][..g.w], -(g.pl as isize), dst),
                    None => dst.fill(0.0),
                }
            }
        }
    }
}

/// `dst[j] = line[start + j]` where that lies inside `line`, else 0: a
/// row of a zero-padded plane.
fn window(line: &[f32], start: isize, dst: &mut [f32]) {
    let lo = (-start).clamp(0, dst.len() as isize) as usize;
    let hi = (line.len() as isize - start).clamp(lo as isize, dst.len() as isize) as usize;
    dst[..lo].fill(0.0);
    let from = (start + lo as isize) as usize;
    dst[lo..hi].copy_from_slice(&line[from..from + (hi - lo)]);
    dst[hi..].fill(0.0);
}

#[allow(clippy::too_many_arguments)]
fn matmul_lowering(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    packed: Option<&PackCache>,
    bias: Option<&[f32]>,
    act: Epilogue,
    threads: usize,
    yp: SyncPtr,
) {
    let (p, k, hw) = (g.p(), g.k(), g.hw());
    let pointwise = g.is_pointwise();
    let product = Product::new(w, g, packed);
    if !pointwise && product.shares_panels(g, threads) {
        return shared_panels(g, x, &product, bias, act, threads, yp);
    }
    let (pt, parts) = product.split(g, threads);
    let tiles = p.div_ceil(pt);
    let rows_per = g.cout_g.div_ceil(parts).next_multiple_of(MR);
    let parts = g.cout_g.div_ceil(rows_per);
    // A 1x1 convolution's product reads its input where it lies, unless
    // `K` is large and the planes are 4 KB or more: then each input row
    // of a tile is in its own page and, from glibc's blocks, 16 bytes off
    // a cache line, and the job copies the tile's rows into its panel, on
    // lines and close together (one core, 512 channels at 56x56: 102 ->
    // 140 GFLOP/s; at `K` of 16-24 the copy cost more than it saved).
    let copy = pointwise && product.packed.is_some() && k >= 128 && hw >= 1024;
    let stride = if copy { pt.next_multiple_of(LINE) } else { pt };
    let panel = if pointwise && !copy { 0 } else { k * stride };
    super::par_jobs(g.b * tiles * parts, g.b * p * g.cout * k).for_each_init(
        || Panel::take(panel),
        |panel, job| {
            let col = panel.floats();
            let (b, t, part) = (job / (tiles * parts), job / parts % tiles, job % parts);
            let p0 = t * pt;
            let n = pt.min(p - p0);
            let r0 = part * rows_per;
            let rows = rows_per.min(g.cout_g - r0);
            for grp in 0..g.groups {
                let xg = &x[(b * g.cin + grp * g.cin_g) * hw..][..g.cin_g * hw];
                let (rhs, rhs_rs) = if copy {
                    for (ci, row) in col.chunks_exact_mut(stride).take(k).enumerate() {
                        row[..n].copy_from_slice(&xg[ci * hw + p0..][..n]);
                    }
                    (col.as_ptr(), stride)
                } else if pointwise {
                    (xg[p0..].as_ptr(), hw)
                } else {
                    im2col(g, xg, p0, n, col);
                    (col.as_ptr(), n)
                };
                // SAFETY: job (b, t, part) alone writes columns p0..p0 + n
                // of rows r0..r0 + rows of image b's group `grp` (`y` has
                // `b · cout · p` floats, uninitialised until here: the
                // product only writes them); it reads the slices above.
                unsafe {
                    product.run_into(
                        g,
                        (b, grp),
                        (r0, rows),
                        (rhs, rhs_rs),
                        (p0, n),
                        yp,
                        bias,
                        act,
                    )
                };
            }
        },
    );
}

/// Output pixels per image up to which a gathered convolution whose tiles
/// would be narrower than [`NARROW`] gathers each image's patches once into
/// a panel all threads read ([`shared_panels`]).
const SHARED_PIXELS: usize = 256;

/// The general lowering for small output planes (ResNet-18's 7x7 and
/// 14x14 layers at batch 1): per image and group, the whole plane's patches
/// gathered once, split over the threads by input channel, then the
/// product split over them by output channels, every part on the packed
/// kernel over all the plane's pixels. Cut into tiles for the threads
/// instead, a 7x7 plane's tiles were 16 pixels wide: too narrow for the
/// packed kernel, and `gemm` packed the whole weight again for each (the
/// 7x7 layers' 3x3 convolutions ran at half the kernel's rate).
fn shared_panels(
    g: &Geom,
    x: &[f32],
    product: &Product,
    bias: Option<&[f32]>,
    act: Epilogue,
    threads: usize,
    yp: SyncPtr,
) {
    let (p, k, hw, taps) = (g.p(), g.k(), g.hw(), g.kh * g.kw);
    let blocks = g.cout_g.div_ceil(MR);
    // Four parts per thread, each whole register blocks.
    let per = blocks.div_ceil(4 * threads).max(1) * MR;
    let parts = g.cout_g.div_ceil(per);
    let mut panel = Panel::take(k * p);
    let col = panel.floats();
    for b in 0..g.b {
        for grp in 0..g.groups {
            let xg = &x[(b * g.cin + grp * g.cin_g) * hw..][..g.cin_g * hw];
            col.par_chunks_mut(taps * p)
                .enumerate()
                .with_min_len(super::min_len(k * p, g.cin_g))
                .for_each(|(ci, dst)| im2col_channel(g, &xg[ci * hw..][..hw], 0, p, dst));
            let col = &*col;
            super::par_jobs(parts, p * g.cout_g * k).for_each(|part| {
                let r0 = part * per;
                let rows = per.min(g.cout_g - r0);
                // SAFETY: part `part` alone writes rows r0..r0 + rows of
                // image b's group `grp` (all `p` columns; `y` has `b · cout
                // · p` floats); it reads the panel, complete once the
                // gather above has returned.
                unsafe {
                    product.run_into(
                        g,
                        (b, grp),
                        (r0, rows),
                        (col.as_ptr(), p),
                        (0, p),
                        yp,
                        bias,
                        act,
                    )
                };
            });
        }
    }
}

/// The matrix product of the general lowering: with AVX-512, the runtime's
/// own kernel on the packed weight ([`super::kernel`]), else `gemm` and a
/// separate epilogue pass.
struct Product<'a> {
    /// The weight, `[cout, K]` in groups.
    w: &'a [f32],
    k: usize,
    cout_g: usize,
    /// Its packing (kept across calls or made for this one), when the
    /// packed kernel runs.
    packed: Option<Cow<'a, Packed>>,
}

/// Output pixels (all images) from which a weight not kept packed is
/// packed for the call: the packing, a pass over the weight, is then a
/// small part of a product that reads each weight element this many
/// times.
const PACK_PIXELS: usize = 256;

/// Tiles narrower than this (the packed kernel's full register tile) make
/// a small plane take [`shared_panels`] instead: ResNet-18's 7x7 layers
/// cut into 16-pixel tiles ran at half the kernel's rate. A narrow tile
/// that is left (a plane's last) runs on the packed kernel all the same:
/// `gemm` packed the whole weight again for it (AlexNet's 27x27 layer,
/// LeNet-5's), and since the kernel's last-column passes
/// (`kernel::columns`, `kernel::tall`) the kernel was even with or ahead of
/// it (LeNet-5 b1 0.965x the time, the other networks even).
const NARROW: usize = 48;

impl<'a> Product<'a> {
    /// `w` is the convolution's weight, `[cout, K]` in groups; `kept`
    /// holds its packing across calls (prepared weights).
    fn new(w: &'a [f32], g: &Geom, kept: Option<&'a PackCache>) -> Product<'a> {
        // `has_avx512` is false off x86-64.
        let packed = if crate::rnn_kernel::has_avx512() {
            match kept.and_then(|c| c.get(w, g)) {
                Some(p) => Some(Cow::Borrowed(p)),
                None if g.b * g.p() >= PACK_PIXELS => Some(Cow::Owned(Packed::of(w, g))),
                None => None,
            }
        } else {
            None
        };
        Product {
            w,
            k: g.k(),
            cout_g: g.cout_g,
            packed,
        }
    }

    /// How [`matmul_lowering`] cuts its work: tiles of how many output
    /// pixels, and each tile's output channels in how many parts.
    ///
    /// A 1x1 convolution on the packed kernel keeps whole tiles (its
    /// register tile is 48 pixels wide: MobileNetV2's 7x7 planes in tiles
    /// of 16 would run at a third of its rate) and splits the channels to
    /// give every thread work. Otherwise the tiles are made smaller
    /// ([`tile_len`]) and the channels are never split: a part would gather
    /// its tile's patches again.
    fn split(&self, g: &Geom, threads: usize) -> (usize, usize) {
        let want = 4 * threads;
        if !g.is_pointwise() || self.packed.is_none() {
            return (tile_len(g, g.k(), want.div_ceil(g.b)), 1);
        }
        let pt = tile_len(g, g.k(), 1);
        let jobs = g.b * g.p().div_ceil(pt);
        let parts = if jobs >= want {
            1
        } else {
            want.div_ceil(jobs).min(g.cout_g.div_ceil(MR))
        };
        (pt, parts)
    }

    /// Whether `g`'s output planes are small enough for [`shared_panels`]
    /// and its usual tiles would be too narrow for the packed kernel.
    fn shares_panels(&self, g: &Geom, threads: usize) -> bool {
        self.packed.is_some()
            && (NARROW..=SHARED_PIXELS).contains(&g.p())
            && self.split(g, threads).0 < NARROW
    }

    /// [`Self::run`] into the output `y` (`b · cout · p` floats): rows
    /// `r0..r0 + rows` of image `b`'s group `grp`, columns `p0..p0 + n`,
    /// with the convolution's whole `bias` (the group's rows taken here).
    ///
    /// # Safety
    /// As [`Self::run`]: `rhs` covers `K` rows of `n` floats `rhs_rs`
    /// apart, and this caller alone writes those rows and columns of `y`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_into(
        &self,
        g: &Geom,
        (b, grp): (usize, usize),
        (r0, rows): (usize, usize),
        (rhs, rhs_rs): (*const f32, usize),
        (p0, n): (usize, usize),
        yp: SyncPtr,
        bias: Option<&[f32]>,
        act: Epilogue,
    ) {
        let p = g.p();
        let c0 = b * g.cout + grp * g.cout_g + r0;
        let bias = bias.map(|bs| &bs[grp * g.cout_g + r0..][..rows]);
        self.run(
            grp,
            (r0, rows),
            (rhs, rhs_rs, n),
            (yp.ptr().add(c0 * p + p0), p),
            bias,
            act,
        )
    }

    /// `y[r, j] = act(bias[r] + Σ_c W[r0 + r, c] rhs[c, j])` for `r <
    /// rows`, `j < n`, with group `grp`'s weight (`r0` a multiple of
    /// [`MR`]); `y`'s rows may be uninitialised.
    ///
    /// # Safety
    /// `rhs` covers `K` rows of `n` floats `rhs_rs` apart, `y` `rows` rows
    /// of `n` floats `y_rs` apart, written by this caller alone.
    unsafe fn run(
        &self,
        grp: usize,
        (r0, rows): (usize, usize),
        (rhs, rhs_rs, n): (*const f32, usize, usize),
        (y, y_rs): (*mut f32, usize),
        bias: Option<&[f32]>,
        act: Epilogue,
    ) {
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = self.packed.as_deref() {
            // Only made with AVX-512 (`new`).
            super::kernel::product(
                packed,
                grp,
                (r0, rows),
                (rhs, super::kernel::Stride(rhs_rs)),
                n,
                (y, y_rs, super::kernel::Cols::Dense),
                bias,
                act,
            );
            return;
        }
        let k = self.k;
        let wg = &self.w[(grp * self.cout_g + r0) * k..][..rows * k];
        matmul(
            rows,
            n,
            k,
            y,
            y_rs,
            false,
            wg.as_ptr(),
            k,
            1,
            rhs,
            rhs_rs,
            1,
        );
        for r in 0..rows {
            let bv = bias.map_or(0.0, |bs| bs[r]);
            epilogue(act, bv, std::slice::from_raw_parts_mut(y.add(r * y_rs), n));
        }
    }
}

thread_local! {
    /// The patch panel of [`matmul_lowering`]'s jobs on this thread, kept
    /// between calls: zeroed only when it grows, not for every job.
    static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread's patch panel, at least `len` floats, for the time a job
/// holds it; given back when dropped. (A job run inside another on the same
/// thread, by work stealing, finds none and makes its own.)
struct Panel(Vec<f32>, usize);

impl Panel {
    fn take(len: usize) -> Panel {
        let v = PANEL.with(|p| std::mem::take(&mut *p.borrow_mut()));
        Panel(v, len)
    }

    /// The panel's `len` floats, from a cache line's start ([`aligned`]).
    fn floats(&mut self) -> &mut [f32] {
        aligned(&mut self.0, self.1)
    }
}

impl Drop for Panel {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        // After the thread's locals are gone there is nowhere to keep it.
        let _ = PANEL.try_with(|p| *p.borrow_mut() = v);
    }
}

fn depthwise(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Epilogue,
    y: &mut [MaybeUninit<f32>],
) {
    let (p, hw, taps) = (g.p(), g.hw(), g.kh * g.kw);
    let mult = g.cout / g.cin;
    #[cfg(target_arch = "x86_64")]
    let in_place = super::depthwise::applies(g);
    #[cfg(not(target_arch = "x86_64"))]
    let in_place = false;
    let pad = Padded::new(g);
    let buf_len = if in_place { 0 } else { pad.size(g) };
    let planes = g.b * g.cout;
    let serial = super::min_len(planes * p * taps, planes);
    y.par_chunks_mut(p)
        .enumerate()
        .with_min_len(serial)
        .for_each_init(
            || vec![0f32; buf_len],
            |buf, (plane, out)| {
                let (b, co) = (plane / g.cout, plane % g.cout);
                let ci = co / mult;
                let xin = &x[(b * g.cin + ci) * hw..][..hw];
                let wk = &w[co * taps..][..taps];
                let ep = (act, bias.map_or(0.0, |bs| bs[co]));
                #[cfg(target_arch = "x86_64")]
                if in_place {
                    // SAFETY: `applies` checked the CPU (AVX-512F, or
                    // AVX2 for a 3x3 kernel); `xin` is the whole input
                    // plane, `wk` every tap, `out` this job's own output
                    // plane of `p` floats.
                    unsafe { super::depthwise::plane(g, xin, wk, ep, out.as_mut_ptr().cast()) };
                    return;
                }
                pad.fill(g, xin, buf);
                depthwise_plane(g, &pad, buf, wk, ep, out);
            },
        );
}

/// Output columns one register block of [`depthwise_plane`] computes: two
/// AVX2 vectors (one AVX-512), kept in registers over all the taps.
const BLOCK: usize = 16;

/// One input plane laid out for [`depthwise_plane`]: zero-padded on every
/// side (so no tap needs a bounds test) and, with a column stride, each
/// padded row split into its `sw` phases (`phase q` holds the padded
/// columns `q, q + sw, ..`), so every tap reads consecutive values; each
/// phase row is long enough for whole blocks of [`BLOCK`] outputs.
#[derive(PartialEq)]
pub(super) struct Padded {
    /// Padded rows: those the taps read.
    rows: usize,
    /// Length of one phase row.
    pub(super) len: usize,
    /// Per phase `q`, where the input's columns go: index `j0` of the
    /// phase row holds input column `first`, and the `n` indices from
    /// there every `sw`-th column after it; `None`: no input column.
    spans: Vec<Option<Span>>,
    /// Stride 2 with both phases holding input columns: the span of the
    /// phase that starts at the even column, the other's, and whether the
    /// first of them is phase 1 (split in one pass by [`split_pairs`]).
    pairs: Option<(Span, Span, bool)>,
}

/// `(j0, first, n)` of [`Padded::spans`].
type Span = (usize, usize, usize);

impl Padded {
    pub(super) fn new(g: &Geom) -> Padded {
        let rows = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
        let len = g.ow.div_ceil(BLOCK) * BLOCK + (g.kw - 1) * g.dw / g.sw + 1;
        // Phase q, index j holds input column j sw + q - pl: from the first
        // j at or right of the left padding, every one up to the input's
        // last column or the row's end.
        let spans: Vec<Option<Span>> = (0..g.sw)
            .map(|q| {
                let j0 = g.pl.saturating_sub(q).div_ceil(g.sw);
                let first = (j0 * g.sw + q).checked_sub(g.pl).filter(|&c| c < g.w)?;
                let n = (g.w - first).div_ceil(g.sw).min(len.saturating_sub(j0));
                Some((j0, first, n))
            })
            .collect();
        let pairs = match spans[..] {
            [Some(a), Some(b)] if a.1.abs_diff(b.1) == 1 => Some(if a.1 < b.1 {
                (a, b, false)
            } else {
                (b, a, true)
            }),
            _ => None,
        };
        Padded {
            rows,
            len,
            spans,
            pairs,
        }
    }

    /// Floats of the laid-out plane.
    pub(super) fn size(&self, g: &Geom) -> usize {
        self.rows * g.sw * self.len
    }

    /// Lays out input plane `x` (`h x w`) into `buf` ([`Self::size`]
    /// floats): padded row `r` is input row `r - pt`, padded column `c`
    /// input column `c - pl`, stored at phase `c % sw`, index `c / sw`.
    ///
    /// Only the places that hold input values are written: the padding
    /// around them must already be zero, as in a zeroed buffer that only
    /// this layout's `fill` has written since (they are the same places
    /// for every plane). Zeroing and copying the whole plane for every
    /// channel was a fifth of MobileNetV2's time at batch 1.
    pub(super) fn fill(&self, g: &Geom, x: &[f32], buf: &mut [f32]) {
        let rows = g.h.min(self.rows.saturating_sub(g.pt));
        for iy in 0..rows {
            let r = iy + g.pt;
            let src = &x[iy * g.w..][..g.w];
            let phases = &mut buf[r * g.sw * self.len..][..g.sw * self.len];
            if let Some(((j0, first, n), (k0, _, m), swapped)) = self.pairs {
                // Stride 2: both phases in one pass over the row.
                let (p0, p1) = phases.split_at_mut(self.len);
                let (lo, hi) = if swapped { (p1, p0) } else { (p0, p1) };
                split_pairs(&src[first..], &mut lo[j0..j0 + n], &mut hi[k0..k0 + m]);
                continue;
            }
            for (q, span) in self.spans.iter().enumerate() {
                let Some((j0, first, n)) = *span else {
                    continue;
                };
                let dst = &mut phases[q * self.len..][j0..j0 + n];
                if g.sw == 1 {
                    dst.copy_from_slice(&src[first..first + n]);
                } else {
                    gather_strided(&src[first..], dst, g.sw);
                }
            }
        }
    }
}

/// `even[i] = src[2 i]`, `odd[i] = src[2 i + 1]` for every index of each
/// (the caller keeps them inside `src`): a row split into its two stride
/// phases in one pass, 32 floats at a time with AVX-512. (Two strided
/// gathers per row were half of a stride-2 depthwise layer's time.)
fn split_pairs(src: &[f32], even: &mut [f32], odd: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::rnn_kernel::has_avx512()
            && 2 * even.len() <= src.len() + 1
            && 2 * odd.len() <= src.len()
        {
            // SAFETY: the CPU has AVX-512F, and the lengths were checked.
            unsafe { split_pairs_avx512(src, even, odd) };
            return;
        }
    }
    gather_strided(src, even, 2);
    gather_strided(src.get(1..).unwrap_or_default(), odd, 2);
}

/// [`split_pairs`] with AVX-512: two loads, two permutes, two stores per
/// 32 floats, masked at the end.
///
/// # Safety
/// The CPU has AVX-512F; `2 even.len() <= src.len() + 1` and
/// `2 odd.len() <= src.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_pairs_avx512(src: &[f32], even: &mut [f32], odd: &mut [f32]) {
    use std::arch::x86_64::*;
    let ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mut i = 0;
    while i < even.len().max(odd.len()) {
        let at = 2 * i;
        let avail = src.len() - at;
        let (ne, no) = (even.len().saturating_sub(i), odd.len().saturating_sub(i));
        // SAFETY: the loads read src[at .. at + min(avail, 32)], the
        // stores even[i .. i + min(ne, 16)] and odd[i .. i + min(no, 16)]
        // (all inside, by the caller's lengths); masked-off lanes are not
        // touched.
        unsafe {
            let a = _mm512_maskz_loadu_ps(bits(avail), src.as_ptr().add(at));
            let b =
                _mm512_maskz_loadu_ps(bits(avail.saturating_sub(16)), src.as_ptr().add(at + 16));
            let e = _mm512_permutex2var_ps(a, ie, b);
            let o = _mm512_permutex2var_ps(a, io, b);
            _mm512_mask_storeu_ps(even.as_mut_ptr().add(i.min(even.len())), bits(ne), e);
            _mm512_mask_storeu_ps(odd.as_mut_ptr().add(i.min(odd.len())), bits(no), o);
        }
        i += 16;
    }
}
simd! {
    /// One output plane of a depthwise convolution from its input plane
    /// laid out by [`Padded::fill`], with the epilogue `(act, bias)`: blocks
    /// of [`ROWS`] output rows by [`BLOCK`] columns sum all `kh * kw` taps
    /// in registers, `acc[j][i] += w * phase_row[base + i]`, take the
    /// epilogue there and are stored once. (The direct loop per tap loaded
    /// and stored the output row for every tap, and one block row alone
    /// waits on its additions' latency: a 5x5 kernel ran at about 16
    /// GFLOP/s. A store of a block's first `n` columns through `memcpy`, and
    /// the epilogue as a second pass over the plane, were a quarter of a
    /// 112x112 plane's time.)
    fn depthwise_plane(g: &Geom, pad: &Padded, buf: &[f32], wk: &[f32], ep: (Epilogue, f32), out: &mut [MaybeUninit<f32>]) {
        // Each kernel column's phase and offset within it.
        let offs: Vec<(usize, usize)> = (0..g.kw)
            .map(|kx| ((kx * g.dw) % g.sw, (kx * g.dw) / g.sw))
            .collect();
        let Some(at) = Taps::new(g, pad, buf, wk, &offs) else {
            // Not a layout `Padded::new` makes (not reached): the plane
            // still gets a value in every element.
            out.fill(MaybeUninit::new(0.0));
            return;
        };
        let full = g.oh / ROWS * ROWS;
        for ox0 in (0..g.ow).step_by(BLOCK) {
            for oy0 in (0..full).step_by(ROWS) {
                let mut acc = at.block::<ROWS>(oy0, ox0);
                for (j, a) in acc.iter_mut().enumerate() {
                    store_block(out, g.ow, (oy0 + j, ox0), ep, a);
                }
            }
            for oy in full..g.oh {
                let [mut a] = at.block::<1>(oy, ox0);
                store_block(out, g.ow, (oy, ox0), ep, &mut a);
            }
        }
    }
}

/// Stores one row of a [`depthwise_plane`] block at output `(oy, ox0)`
/// of a plane `ow` wide, after its epilogue. A function, not a closure:
/// closures do not inherit the caller's target features.
#[inline(always)]
fn store_block(
    out: &mut [MaybeUninit<f32>],
    ow: usize,
    (oy, ox0): (usize, usize),
    ep: (Epilogue, f32),
    a: &mut [f32; BLOCK],
) {
    epilogue_inline(ep.0, ep.1, a);
    let row = &mut out[oy * ow + ox0..(oy + 1) * ow];
    match <&mut [MaybeUninit<f32>; BLOCK]>::try_from(row.get_mut(..BLOCK).unwrap_or_default()) {
        // SAFETY: `whole` is BLOCK writable floats (maybe uninitialised).
        Ok(whole) => unsafe { whole.as_mut_ptr().cast::<[f32; BLOCK]>().write(*a) },
        // Kept out of line: inlined, the compiler merged both stores into
        // one `memcpy` call of variable length, a quarter of the time.
        Err(_) => store_part(row, a),
    }
}

/// The last, partial block of a row: the columns left.
#[inline(never)]
fn store_part(row: &mut [MaybeUninit<f32>], a: &[f32; BLOCK]) {
    let n = row.len().min(BLOCK);
    // SAFETY: `row` holds at least `n` writable floats, `a` BLOCK >= n;
    // they do not overlap (`a` is the caller's registers' copy).
    unsafe { std::ptr::copy_nonoverlapping(a.as_ptr(), row.as_mut_ptr().cast::<f32>(), n) };
}

/// Output rows of one register block of [`depthwise_plane`]: 4 x 2 AVX2
/// accumulators, enough independent sums to hide the additions' latency.
const ROWS: usize = 4;

/// What [`depthwise_plane`]'s blocks read.
struct Taps<'a> {
    g: &'a Geom,
    len: usize,
    buf: &'a [f32],
    wk: &'a [f32],
    offs: &'a [(usize, usize)],
}

impl<'a> Taps<'a> {
    /// `None` unless `pad` is the layout of a plane of `g` (what
    /// [`Padded::new`] makes), `buf` holds all of it and `wk` all of its
    /// taps: what [`Self::block`]'s reads rely on.
    fn new(
        g: &'a Geom,
        pad: &Padded,
        buf: &'a [f32],
        wk: &'a [f32],
        offs: &'a [(usize, usize)],
    ) -> Option<Self> {
        let fits = *pad == Padded::new(g)
            && buf.len() >= pad.size(g)
            && wk.len() >= g.kh * g.kw
            && offs.len() == g.kw;
        fits.then_some(Taps {
            g,
            len: pad.len,
            buf,
            wk,
            offs,
        })
    }

    /// Output rows `oy0..oy0 + R`, columns `ox0..ox0 + BLOCK` (past `ow`:
    /// values that are not stored).
    #[inline(always)]
    fn block<const R: usize>(&self, oy0: usize, ox0: usize) -> [[f32; BLOCK]; R] {
        let g = self.g;
        let mut acc = [[0f32; BLOCK]; R];
        for ky in 0..g.kh {
            for (kx, &(q, off)) in self.offs.iter().enumerate() {
                let wv = self.wk[ky * g.kw + kx];
                for (j, aj) in acc.iter_mut().enumerate() {
                    let r = (oy0 + j) * g.sh + ky * g.dh;
                    let at = (r * g.sw + q) * self.len + ox0 + off;
                    // SAFETY: `Taps::new` checked that the buffer holds
                    // the whole layout, and every tap of an output block
                    // lies inside it: output row oy0 + j < oh reads padded
                    // row r <= (oh - 1) sh + (kh - 1) dh < `Padded::rows`,
                    // phase q < sw, and columns ox0 + off + BLOCK <=
                    // ceil(ow / BLOCK) BLOCK + (kw - 1) dw / sw <= `len`.
                    // (A bounds test per tap and row was half the
                    // instructions of a 3x3 block.)
                    let src = unsafe { &*self.buf.as_ptr().add(at).cast::<[f32; BLOCK]>() };
                    for (a, &v) in aj.iter_mut().zip(src) {
                        *a = wv.mul_add(v, *a);
                    }
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::{gather_strided, Geom, Wide};
    use crate::conv::Conv2dSpec;

    /// The wide lowering is taken where it was measured to pay (LeNet-5's
    /// two convolutions) and not where it was measured to lose (AlexNet's
    /// 13x13 layers, ResNet-18's 7x7 ones) or cannot apply (stride 2).
    #[test]
    fn the_wide_lowering_is_chosen_where_it_pays() {
        let geom = |x: [usize; 4], w: [usize; 4], s: usize, p: usize| {
            let spec = Conv2dSpec {
                stride: (s, s),
                padding: ((p, p), (p, p)),
                dilation: (1, 1),
                groups: 1,
            };
            Geom::new(&x, &w, None, &spec).unwrap()
        };
        assert!(Wide::wins(&geom([256, 6, 14, 14], [16, 6, 5, 5], 1, 0)));
        assert!(Wide::wins(&geom([256, 1, 32, 32], [6, 1, 5, 5], 1, 0)));
        assert!(!Wide::wins(&geom([8, 384, 13, 13], [256, 384, 3, 3], 1, 1)));
        assert!(!Wide::wins(&geom([1, 512, 7, 7], [512, 512, 3, 3], 1, 1)));
        assert!(!Wide::wins(&geom([1, 6, 14, 14], [16, 6, 5, 5], 2, 0)));
    }

    /// The strided gather equals the plain loop for strides 2 to 5, every
    /// output length up to 70 (whole vectors and tails, with AVX-512 or
    /// without) and sources just long enough or longer.
    #[test]
    fn the_strided_gather_takes_every_s_th_element() {
        let src: Vec<f32> = (0..400).map(|i| i as f32 * 0.5 - 3.0).collect();
        for s in 2..=5usize {
            for n in 0..70usize {
                for extra in [0, 1, 31] {
                    let len = (s * n).saturating_sub(s - 1) + extra;
                    let mut out = vec![f32::NAN; n];
                    gather_strided(&src[..len], &mut out, s);
                    let want: Vec<f32> = (0..n).map(|j| src[s * j]).collect();
                    assert_eq!(out, want, "stride {s}: {n} outputs from {len}");
                }
            }
        }
    }
}
