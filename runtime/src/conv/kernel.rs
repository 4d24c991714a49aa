//! The convolutions' own matrix product, for CPUs with AVX-512F:
//! `y[r, j] = act(bias[r] + Σ_c W[r, c] · x[c, j])` with the weight packed
//! once (kept by prepared weights, [`PackCache`]) and the right-hand side
//! read where it lies.
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
//! `K` in the thousands it was 1.1-1.2x slower (those tiles stay on
//! `gemm`, see `cpu.rs`).
//!
//! The register tile is 8 output channels by 48 pixels (24 `zmm`
//! accumulators): per input channel, three loads of `x`'s row, eight
//! broadcasts of the packed weight column, 24 FMAs. A row's last partial
//! vector is loaded and stored under a mask, so a tile never reads or
//! writes past its `n` columns. `K` is cut into chunks of [`KC`] so that a
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
/// `r0` (`r0` a multiple of [`MR`]). Rows of `x` are `x_rs` floats apart,
/// of `y` `y_rs`; `y` may be uninitialised: every element of its `rows x n`
/// is written.
///
/// # Safety
/// The CPU has AVX-512F; `x` covers `w.k` rows of `n` floats and `y` `rows`
/// rows of `n` floats at those strides; `r0 + rows <= w.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn product(
    w: &Packed,
    g: usize,
    (r0, rows): (usize, usize),
    (x, x_rs): (*const f32, usize),
    n: usize,
    (y, y_rs): (*mut f32, usize),
    bias: Option<&[f32]>,
    act: Epilogue,
) {
    let k = w.k;
    // The activations applied in registers; any other is applied to the
    // finished rows afterwards (with the bias already added).
    let fused = fused(act);
    let in_regs = if fused { act } else { Epilogue::None };
    let mut k0 = 0;
    loop {
        let kc = KC.min(k - k0);
        let chunk = Chunk {
            first: k0 == 0,
            last: k0 + kc == k,
            act: in_regs,
        };
        for b in 0..rows.div_ceil(MR) {
            let here = MR.min(rows - b * MR);
            let mut lane_bias = [0.0f32; MR];
            if let Some(bias) = bias {
                lane_bias[..here].copy_from_slice(&bias[b * MR..][..here]);
            }
            let wb = &w.block(g, r0 / MR + b)[k0 * MR..][..kc * MR];
            let yb = y.add(b * MR * y_rs);
            let xb = x.add(k0 * x_rs);
            let mut j = 0;
            while j < n {
                let left = n - j;
                let t = Tile {
                    k: kc,
                    w: wb.as_ptr(),
                    x: (xb.add(j), x_rs),
                    y: (yb.add(j), y_rs),
                    rows: here,
                    bias: &lane_bias,
                };
                // Full tiles of 48, then one of 1 to 3 vectors whose last
                // is masked.
                if left >= NR {
                    tile::<3>(&t, u16::MAX, &chunk);
                    j += NR;
                    continue;
                }
                let mask = |from: usize| super::cpu::bits(left - from);
                match left {
                    33.. => tile::<3>(&t, mask(32), &chunk),
                    17.. => tile::<2>(&t, mask(16), &chunk),
                    _ => tile::<1>(&t, mask(0), &chunk),
                }
                j = n;
            }
        }
        k0 += kc;
        if k0 >= k {
            break;
        }
    }
    if !fused {
        for r in 0..rows {
            epilogue(act, 0.0, std::slice::from_raw_parts_mut(y.add(r * y_rs), n));
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
}

/// One register tile's operands.
#[cfg(target_arch = "x86_64")]
struct Tile<'a> {
    k: usize,
    /// `k x MR` packed weights.
    w: *const f32,
    x: (*const f32, usize),
    y: (*mut f32, usize),
    /// Rows stored (the rest of the block is zero weight).
    rows: usize,
    bias: &'a [f32; MR],
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
unsafe fn tile<const NV: usize>(t: &Tile, last_mask: u16, chunk: &Chunk) {
    let (x, x_rs) = t.x;
    let (y, y_rs) = t.y;
    let mut mask = [u16::MAX; NV];
    mask[NV - 1] = last_mask;
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    if !chunk.first {
        for r in 0..MR {
            if r < t.rows {
                for v in 0..NV {
                    acc[r][v] = _mm512_maskz_loadu_ps(mask[v], y.add(r * y_rs + 16 * v));
                }
            }
        }
    }
    for c in 0..t.k {
        let row = x.add(c * x_rs);
        let mut xv = [_mm512_setzero_ps(); NV];
        for v in 0..NV {
            xv[v] = _mm512_maskz_loadu_ps(mask[v], row.add(16 * v));
        }
        let wc = t.w.add(c * MR);
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
            _mm512_mask_storeu_ps(y.add(r * y_rs + 16 * v), mask[v], z);
        }
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
    let zero = _mm512_setzero_ps();
    let z = _mm512_add_ps(z, _mm512_set1_ps(bias));
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

    /// Every tile shape (full tiles, 1 to 3 vectors with a masked last),
    /// partial row blocks, chunks of `K` past [`KC`], strided operands and
    /// each in-register activation against the definition.
    #[test]
    fn product_equals_the_definition() {
        if !crate::rnn_kernel::has_avx512() {
            return;
        }
        let mut seed = 7u32;
        let mut rand = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
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
                        (x.as_ptr(), x_rs),
                        n,
                        (y.as_mut_ptr(), y_rs),
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
