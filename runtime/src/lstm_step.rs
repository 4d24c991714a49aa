//! An LSTM direction of inference in one kernel per step (AVX-512): the
//! input projection, the recurrent product and the cell,
//! `gates = b + x_t W_ihᵀ + h W_hhᵀ`, `c = σ(f) c + σ(i) tanh(g)`,
//! `h = σ(o) tanh(c)`, on a register tile.
//!
//! The unfused direction projects every step's input first, into a
//! `[T·B, 4H]` buffer (13 MB per layer in the benchmark, written to memory
//! and read back), then per step copies its rows into a gates buffer, adds
//! the recurrent product, and passes over the gates twice more (the
//! activations, then the cell). Here the rows of `W_ih` and `W_hh` are
//! packed together by blocks of 8 hidden units with the four gates side by
//! side (32 columns: `i f` of the 8 units in one `zmm` register, `g o` in
//! another), so a tile of 8 batch rows holds every gate of its units: the
//! accumulators start from the bias, take the step's input rows where they
//! lie (no transpose of a batch-first input), then the previous `h`, and
//! the cell is computed from the registers, writing only `c`, the next `h`
//! and the output. The hidden units are split between threads for the
//! whole sequence, which meet at a barrier after each step.
//!
//! Numerically it is the unfused direction: the same products summed in
//! the same order (bias, input, hidden state), the same `exp` polynomial and
//! formulas as the scalar and AVX2 activations.

/// Hidden units per block: half a 16-lane vector per gate.
const UNITS: usize = 8;
/// Floats per row of a block's panel: 4 gates x 8 units.
const WIDTH: usize = 4 * UNITS;
/// Batch rows per tile: 8 x 2 accumulators, 2 weight vectors and a
/// broadcast (the packed kernel's tile).
const ROWS: usize = 8;

/// The rows of `W_ih` (`[4·hid, f]`) and `W_hh` (`[4·hid, hid]`),
/// row-major, gates `i f g o`, of the hidden units `u0..u1`, packed for
/// [`step`]: block `q` (units `u0 + 8q ..`) holds `f + hid` rows of 32
/// floats, row `kk` the column `kk` of `[W_ih | W_hh]`: its entry
/// `gi·8 + j` is that of the row `gi·hid + u0 + 8q + j` (zero past `u1`).
pub(crate) struct LstmPacked {
    data: Vec<f32>,
    units: usize,
    /// Input features, then hidden units: the two parts of each row.
    f: usize,
    hid: usize,
}

impl LstmPacked {
    /// `None` where a weight is shorter than `4·hid` rows, or the units
    /// are not inside `0..hid`.
    pub(crate) fn new(
        w_ih: &[f32],
        w_hh: &[f32],
        f: usize,
        hid: usize,
        units: std::ops::Range<usize>,
    ) -> Option<Self> {
        if units.start > units.end
            || units.end > hid
            || w_ih.len() < 4 * hid * f
            || w_hh.len() < 4 * hid * hid
        {
            return None;
        }
        let n = units.end - units.start;
        let k = f + hid;
        let mut data = vec![0.0f32; n.div_ceil(UNITS) * k * WIDTH];
        for u in 0..n {
            let (q, j) = (u / UNITS, u % UNITS);
            let block = &mut data[q * k * WIDTH..(q + 1) * k * WIDTH];
            for gi in 0..4 {
                let r = gi * hid + units.start + u;
                let row = w_ih[r * f..(r + 1) * f]
                    .iter()
                    .chain(&w_hh[r * hid..(r + 1) * hid]);
                for (kk, &v) in row.enumerate() {
                    block[kk * WIDTH + gi * UNITS + j] = v;
                }
            }
        }
        Some(LstmPacked {
            data,
            units: n,
            f,
            hid,
        })
    }
}

impl LstmPacked {
    /// Whether this is a packing of `units` units of weights with `f`
    /// input features and `hid` hidden units.
    pub(crate) fn fits(&self, f: usize, hid: usize, units: usize) -> bool {
        self.f == f && self.hid == hid && self.units == units
    }
}

/// An LSTM's weights packed for [`step`], kept in a network's fusion cache
/// (one slot per recurrent layer, `Fusion::get_lstm`): for each layer and
/// direction `k` and thread count, each thread's units. Made empty when
/// the weights change (a new slot value), filled on first use.
#[derive(Clone, Default)]
pub(crate) struct LstmPacks(std::sync::Arc<std::sync::Mutex<PackMap>>);

type PackMap = std::collections::HashMap<(usize, usize), std::sync::Arc<Vec<LstmPacked>>>;

impl LstmPacks {
    /// The packing of layer-direction `k` split between `threads`, made by
    /// `pack` (one per thread) the first time.
    pub(crate) fn get_or_pack(
        &self,
        k: usize,
        threads: usize,
        pack: impl FnOnce() -> Option<Vec<LstmPacked>>,
    ) -> Option<std::sync::Arc<Vec<LstmPacked>>> {
        if let Some(p) = self.0.lock().ok()?.get(&(k, threads)) {
            return Some(p.clone());
        }
        let packed = std::sync::Arc::new(pack()?);
        if let Ok(mut map) = self.0.lock() {
            map.insert((k, threads), packed.clone());
        }
        Some(packed)
    }
}

/// Whether [`step`] runs here: the CPU has AVX-512F and it is not turned off
/// (`NETDSL_NO_AVX512`, as for the packed kernel).
pub(crate) fn available() -> bool {
    crate::rnn_kernel::has_avx512()
}

/// Where one step reads and writes, every state pointer at the first of
/// the packed units (unit `u0`) of batch row 0.
#[derive(Clone, Copy)]
pub(crate) struct StepIo {
    /// Both biases summed, `4·hid` floats (gate `gi` of unit `u` at
    /// `gi·hid + u`), from unit `u0`.
    pub bias: *const f32,
    /// The step's input, `f` floats per row, `x_stride` apart.
    pub x: *const f32,
    pub x_stride: usize,
    /// The previous hidden state, all `hid` of each row (`state_stride`
    /// apart), read whole by the product.
    pub h_prev: *const f32,
    /// The previous hidden state at unit `u0`: what a row past its
    /// sequence's end carries over.
    pub h_keep: *const f32,
    /// The cell state, updated in place; the next hidden state; the output
    /// row of this step (left as it is for a row past its end).
    pub c: *mut f32,
    pub h_next: *mut f32,
    pub out: *mut f32,
    pub state_stride: usize,
}

/// One step for `batch` rows: `live(b)` says whether row `b` is inside its
/// sequence (outside, its `h` is carried and `c` and the output are left).
///
/// # Safety
/// [`available`] is true; `io.bias` has the `4·hid` floats from unit `u0`
/// of `w`'s units, `io.x` `batch` rows of `w.f` floats, `io.h_prev`
/// `batch` rows of `w.hid`, and the other state pointers `batch` rows of
/// `w`'s units; no other thread writes what this call reads, or reads or
/// writes what it writes.
pub(crate) unsafe fn step(w: &LstmPacked, io: StepIo, batch: usize, live: impl Fn(usize) -> bool) {
    #[cfg(target_arch = "x86_64")]
    {
        let k = w.f + w.hid;
        for q in 0..w.units.div_ceil(UNITS) {
            let valid = UNITS.min(w.units - q * UNITS);
            let panel = &w.data[q * k * WIDTH..(q + 1) * k * WIDTH];
            let u = q * UNITS;
            for b0 in (0..batch).step_by(ROWS) {
                let rows = ROWS.min(batch - b0);
                let alive: [bool; ROWS] = std::array::from_fn(|r| r < rows && live(b0 + r));
                let s = b0 * io.state_stride + u;
                let tile_io = StepIo {
                    bias: io.bias.wrapping_add(u),
                    x: io.x.wrapping_add(b0 * io.x_stride),
                    h_prev: io.h_prev.wrapping_add(b0 * io.state_stride),
                    h_keep: io.h_keep.wrapping_add(s),
                    c: io.c.wrapping_add(s),
                    h_next: io.h_next.wrapping_add(s),
                    out: io.out.wrapping_add(s),
                    ..io
                };
                // SAFETY: the tile's rows and units are inside what the
                // caller promises; AVX-512F is there (`available`).
                unsafe { tile(panel, (w.f, w.hid), tile_io, rows, valid, alive) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, io, batch, live);
        unreachable!("`available` is false off x86-64");
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// `exp` 16 lanes at a time: the scalar and AVX2 ones' range reduction
    /// and polynomial.
    #[inline(always)]
    pub(super) unsafe fn exp16(x: __m512) -> __m512 {
        // SAFETY: register-only intrinsics; the caller runs with AVX-512F.
        unsafe {
            let x = _mm512_min_ps(
                _mm512_max_ps(x, _mm512_set1_ps(-87.3)),
                _mm512_set1_ps(88.3),
            );
            let t = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E));
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
            let mut p = _mm512_set1_ps(1.0 / 720.0);
            for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
            }
            let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(
                _mm512_cvtps_epi32(n),
                _mm512_set1_epi32(127),
            ));
            _mm512_mul_ps(p, _mm512_castsi512_ps(bits))
        }
    }

    /// `a + b / (exp(s·x) + 1)` lane by lane: `σ(x)` is `(0, 1, -1)`,
    /// `tanh(x)` is `(1, -2, 2)`, the unfused activations' formulas.
    #[inline(always)]
    pub(super) unsafe fn act16(x: __m512, s: __m512, a: __m512, b: __m512) -> __m512 {
        // SAFETY: as `exp16`.
        unsafe {
            let e = exp16(_mm512_mul_ps(x, s));
            _mm512_add_ps(a, _mm512_div_ps(b, _mm512_add_ps(e, _mm512_set1_ps(1.0))))
        }
    }

    /// The upper 8 lanes.
    #[inline(always)]
    pub(super) unsafe fn high(v: __m512) -> __m256 {
        // SAFETY: register-only intrinsics; the caller runs with AVX-512F.
        unsafe { _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))) }
    }
}

/// One tile: `rows` (at most 8) batch rows by `valid` (at most 8) units,
/// every gate of them; `f` input features and `hid` hidden units.
///
/// # Safety
/// As [`step`], for this tile's rows and units; `panel` is one block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile(
    panel: &[f32],
    (f, hid): (usize, usize),
    io: StepIo,
    rows: usize,
    valid: usize,
    alive: [bool; ROWS],
) {
    use simd::{act16, high};
    use std::arch::x86_64::*;
    // The units' lanes, in the low half and in the high half.
    let lo: __mmask16 = ((1u32 << valid) - 1) as __mmask16;
    let hi: __mmask16 = lo << 8;
    // SAFETY (for the whole body): `panel` has (f + hid) * 32 floats;
    // every row below `rows` of each pointer of `io` has the units below
    // `valid` (and `f` floats of `x`, `hid` of `h_prev`), which the masks
    // keep to (a masked-off lane is not read or written; the high half's
    // pointers are 8 floats back so that lane 8 + j reads unit j). The
    // caller's promise.
    unsafe {
        let gate = |gi: usize| io.bias.add(gi * hid);
        // The bias of [i | f] and of [g | o] of these units.
        let start = [
            _mm512_mask_loadu_ps(
                _mm512_maskz_loadu_ps(lo, gate(0)),
                hi,
                gate(1).wrapping_sub(8),
            ),
            _mm512_mask_loadu_ps(
                _mm512_maskz_loadu_ps(lo, gate(2)),
                hi,
                gate(3).wrapping_sub(8),
            ),
        ];
        let one = _mm512_set1_ps(1.0);
        let halves =
            |l: f32, h: f32| _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(l), _mm512_set1_ps(h));
        // [σ(i) | σ(f)], then [tanh(g) | σ(o)].
        let (s0, a0, b0) = (_mm512_set1_ps(-1.0), _mm512_setzero_ps(), one);
        let (s1, a1, b1) = (halves(2.0, -1.0), halves(1.0, 0.0), halves(-2.0, 1.0));
        let cell = |r: usize, acc: [__m512; 2]| {
            let at = r * io.state_stride;
            if !alive[r] {
                let kept = _mm512_maskz_loadu_ps(lo, io.h_keep.add(at));
                _mm512_mask_storeu_ps(io.h_next.add(at), lo, kept);
                return;
            }
            let v0 = act16(acc[0], s0, a0, b0);
            let v1 = act16(acc[1], s1, a1, b1);
            let (i, f) = (_mm512_castps512_ps256(v0), high(v0));
            let (g, o) = (_mm512_castps512_ps256(v1), high(v1));
            let c = _mm512_castps512_ps256(_mm512_maskz_loadu_ps(lo, io.c.add(at)));
            // As the unfused cell: `f * c + i * g`, rounded the same.
            let c = _mm256_add_ps(_mm256_mul_ps(f, c), _mm256_mul_ps(i, g));
            let c = _mm512_castps256_ps512(c);
            // tanh(c) · o (the upper half of the vector is unused).
            let t =
                _mm512_castps512_ps256(act16(c, _mm512_set1_ps(2.0), one, _mm512_set1_ps(-2.0)));
            let hn = _mm512_castps256_ps512(_mm256_mul_ps(t, o));
            _mm512_mask_storeu_ps(io.c.add(at), lo, c);
            _mm512_mask_storeu_ps(io.h_next.add(at), lo, hn);
            _mm512_mask_storeu_ps(io.out.add(at), lo, hn);
        };
        // `acc[r] += Σ_kk src[r, kk] w[kk]` over `n` rows of the panel
        // from `w`.
        macro_rules! product {
            ($a:ident, $n:literal, $src:expr, $stride:expr, $w:expr, $len:expr) => {{
                let (src, stride, w): (*const f32, usize, *const f32) = ($src, $stride, $w);
                for kk in 0..$len {
                    let w0 = _mm512_loadu_ps(w.add(kk * WIDTH));
                    let w1 = _mm512_loadu_ps(w.add(kk * WIDTH + 16));
                    for r in 0..$n {
                        let v = _mm512_set1_ps(*src.add(r * stride + kk));
                        $a[r][0] = _mm512_fmadd_ps(v, w0, $a[r][0]);
                        $a[r][1] = _mm512_fmadd_ps(v, w1, $a[r][1]);
                    }
                }
            }};
        }
        // The whole tile for a constant row count: the accumulators stay
        // in registers (indexed by a run-time row count, LLVM keeps them
        // in memory and stores them on every `kk`).
        macro_rules! rows_tile {
            ($n:literal) => {{
                let mut a = [start; $n];
                let w = panel.as_ptr();
                product!(a, $n, io.x, io.x_stride, w, f);
                product!(a, $n, io.h_prev, io.state_stride, w.add(f * WIDTH), hid);
                for r in 0..$n {
                    cell(r, a[r]);
                }
            }};
        }
        match rows {
            8 => rows_tile!(8),
            7 => rows_tile!(7),
            6 => rows_tile!(6),
            5 => rows_tile!(5),
            4 => rows_tile!(4),
            3 => rows_tile!(3),
            2 => rows_tile!(2),
            _ => rows_tile!(1),
        }
    }
}
