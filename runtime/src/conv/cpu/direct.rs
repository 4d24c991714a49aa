//! The direct lowering: a convolution's product read straight from its
//! input, with no patches gathered.
//!
//! Split into its stride phases and zero-padded once per job, the input
//! turns every tap `(ci, ky, kx)` into a shift: phase `((ky dh) % sh, (kx
//! dw) % sw)` of plane `ci`, moved `(ky dh) / sh` phase rows down and `(kx
//! dw) / sw` columns right. Over the phase planes' whole width `wq`, wide
//! pixel `q = oy wq + ox` of that tap is the phase plane's float `q` plus
//! the shift, so row `(ci, ky, kx)` of the patch matrix is the plane
//! itself from an offset ([`kernel::Table`](super::super::kernel::Table)),
//! and the packed kernel multiplies the weight by it in place. The `wq -
//! ow` columns past each output row are computed and dropped.
//!
//! What it saves is the general lowering's gathering: `K` copies of every
//! output pixel (`9/4` of the input for a 3x3 stride-2 layer, `147/4` for
//! ResNet's 7x7 stem), strided ones for a strided layer, which were a
//! third of a stride-2 layer's time. What it costs is one copy of the
//! input (its phases, padded) and the product's extra columns, `(wq - ow)
//! / ow` of its work ([`Direct::wins`]).

use rayon::prelude::*;

use super::super::kernel::{product, Cols, Packed, Table, MR};
use super::{gather_strided, Panel, SyncPtr};
use crate::conv::geom::Geom;
use crate::conv::Epilogue;

/// Wide pixels a job's product should have at least, where the plane
/// allows it: four of the kernel's 48-pixel tiles.
const MIN_PIXELS: usize = 192;

pub(in crate::conv) struct Direct {
    /// Phase columns per phase row: `ow` plus the widest tap's shift.
    wq: usize,
    /// Phase rows past the output's: the tallest tap's shift.
    halo: usize,
    /// The phases (`py · sw + px`) some tap reads, in slot order.
    phases: Vec<usize>,
    /// Output rows per job, jobs per group of an image.
    rows: usize,
    tiles: usize,
    /// Output channels per job (whole register blocks), jobs per run of
    /// rows.
    per: usize,
    parts: usize,
}

impl Direct {
    /// Whether the direct lowering beats gathering patches. Each layer
    /// alone, the two alternated in one process on the 2-core AVX-512
    /// machine of `docs/performance.md`, batch 1, direct / gathered:
    ///
    /// - ResNet's 7x7 stride-2 stem 0.83, AlexNet's 11x11 stride-4 and
    ///   5x5 layers 0.76, 3x3 stride-2 layers 0.86-0.95 (56 to 14 input
    ///   rows, 64 to 256 input channels);
    /// - 3x3 layers of 16 to 64 channels over 256 to 56 rows 0.76-0.86,
    ///   128 over 28 even, 256 over 14 0.58, 384 over 13 0.63, 512 over 7
    ///   0.92, over 4 0.58 (the gathered patches' small planes ran at half
    ///   the kernel's rate).
    ///
    /// So it is taken unless the columns it drops are a third of what it
    /// computes or more (`2 (wq - ow) > ow`), or it would fill a phase per
    /// tap or close to it: a 1x1 strided layer (even, 0.90-1.02), or a
    /// strided one with fewer than 32 rows of patches (MobileNetV2's 3x3
    /// stride-2 stem over 3 channels, 1.03-1.17, its rows stored across
    /// row ends for 27 multiply-adds each).
    pub(in crate::conv) fn wins(g: &Geom) -> bool {
        if g.is_pointwise() || g.is_depthwise() && g.groups > 1 {
            return false;
        }
        let (wq, _) = Direct::shifts(g);
        let phases = Direct::phases(g).len();
        let few_taps = g.kh * g.kw < 2 * phases || phases > 1 && g.k() < 32;
        2 * (wq - g.ow) <= g.ow && !few_taps
    }

    /// Tap `(ky, kx)`'s phase (`py · sw + px`), and its shift in phase
    /// rows and columns.
    fn tap(g: &Geom, ky: usize, kx: usize) -> (usize, usize, usize) {
        let (y, x) = (ky * g.dh, kx * g.dw);
        ((y % g.sh) * g.sw + x % g.sw, y / g.sh, x / g.sw)
    }

    /// The phases some tap reads, in order.
    fn phases(g: &Geom) -> Vec<usize> {
        let mut phases: Vec<usize> = (0..g.kh)
            .flat_map(|ky| (0..g.kw).map(move |kx| Direct::tap(g, ky, kx).0))
            .collect();
        phases.sort_unstable();
        phases.dedup();
        phases
    }

    /// `(wq, halo)`: the last tap's shifts are the largest.
    fn shifts(g: &Geom) -> (usize, usize) {
        let (_, ay, ax) = Direct::tap(g, g.kh - 1, g.kw - 1);
        (g.ow + ax, ay)
    }

    pub(in crate::conv) fn new(g: &Geom, threads: usize) -> Direct {
        let (wq, halo) = Direct::shifts(g);
        let phases = Direct::phases(g);
        // Each image's jobs keep every thread busy: runs of rows at least
        // MIN_PIXELS wide, then the output channels in parts.
        let want = 4 * threads;
        let tiles = want.min((g.oh * wq / MIN_PIXELS).max(1)).min(g.oh);
        let rows = g.oh.div_ceil(tiles);
        let tiles = g.oh.div_ceil(rows);
        let blocks = g.cout_g.div_ceil(MR);
        let jobs = g.groups * tiles;
        let parts = if jobs >= want {
            1
        } else {
            want.div_ceil(jobs).min(blocks)
        };
        let per = blocks.div_ceil(parts) * MR;
        Direct {
            wq,
            halo,
            parts: g.cout_g.div_ceil(per),
            phases,
            rows,
            tiles,
            per,
        }
    }

    /// Floats of one phase plane of a run of rows.
    fn plane(&self) -> usize {
        (self.rows + self.halo) * self.wq
    }

    /// Row `(ci, ky, kx)`'s offset in a group's planes of a run.
    fn offsets(&self, g: &Geom) -> Vec<usize> {
        let plane = self.plane();
        let mut offs = Vec::with_capacity(g.k());
        for ci in 0..g.cin_g {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let (phase, ay, ax) = Direct::tap(g, ky, kx);
                    // `phases` holds every tap's phase.
                    let slot = self.phases.binary_search(&phase).unwrap_or(0);
                    offs.push((ci * self.phases.len() + slot) * plane + ay * self.wq + ax);
                }
            }
        }
        offs
    }

    pub(in crate::conv) fn run(
        &self,
        g: &Geom,
        x: &[f32],
        packed: &Packed,
        bias: Option<&[f32]>,
        act: Epilogue,
        yp: SyncPtr,
    ) {
        let (p, hw, wq) = (g.p(), g.hw(), self.wq);
        let offs = self.offsets(g);
        // Per run of output rows, the planes that it reads, all input
        // channels: each run's are close together (apart, in planes of the
        // whole image, the tiles' rows came from a page each, and the
        // product ran at 0.85x).
        let per_channel = self.phases.len() * self.plane();
        let per_run = g.cin * per_channel;
        let planes = self.tiles * per_run;
        // The product stores each row's first `ow` columns of `wq` into
        // the output (copied from a wide output afterwards, that copy was
        // as costly as the gathering it replaced).
        let cols = if wq == g.ow {
            Cols::Dense
        } else {
            Cols::Wide { wq, ow: g.ow }
        };
        // The dropped columns of the last row read up to `wq` floats past
        // the planes: zeros, never uninitialised memory (a denormal there
        // would slow every FMA that reads it).
        let slack = wq + 16;
        // Job (grp, t, part) of image b: output channels `c0..c0 + rows` of
        // the group, rows r0..r1, from `rhs`, the group's planes of run t.
        // SAFETY (of each call): `rhs` holds every offset plus `len`
        // floats (the slack past the last run's); the job alone writes
        // those channels and rows of image b.
        let job = |b: usize, grp: usize, t: usize, part: usize, rhs: *const f32| unsafe {
            let (r0, r1) = (t * self.rows, ((t + 1) * self.rows).min(g.oh));
            let len = (r1 - r0 - 1) * wq + g.ow;
            let c0 = part * self.per;
            let rows = self.per.min(g.cout_g - c0);
            let bias = bias.map(|bs| &bs[grp * g.cout_g + c0..][..rows]);
            let c = grp * g.cout_g + c0;
            let y = yp.ptr().add((b * g.cout + c) * p + r0 * g.ow);
            let rhs = (rhs, Table(offs.as_ptr()));
            product(packed, grp, (c0, rows), rhs, len, (y, p, cols), bias, act);
        };
        if self.parts == 1 {
            // Each job fills its own run's planes, on its own core, and
            // multiplies them while they are in its cache (filled for
            // all jobs first, the stem of MobileNetV2 ran 1.1x slower
            // than on gathered patches).
            let group = g.cin_g * per_channel;
            let jobs = g.b * g.groups * self.tiles;
            super::super::par_jobs(jobs, g.b * p * g.cout * g.k()).for_each_init(
                || Panel::take(group + slack),
                |panel, i| {
                    let src = panel.floats();
                    let (b, grp, t) = (
                        i / (g.groups * self.tiles),
                        i / self.tiles % g.groups,
                        i % self.tiles,
                    );
                    let xg = &x[(b * g.cin + grp * g.cin_g) * hw..][..g.cin_g * hw];
                    for (dst, plane) in src.chunks_exact_mut(per_channel).zip(xg.chunks_exact(hw)) {
                        self.fill(g, plane, t * self.rows, dst);
                    }
                    src[group..].fill(0.0);
                    job(b, grp, t, 0, src.as_ptr());
                },
            );
            return;
        }
        // Output channels in parts: every image's planes filled once, for
        // all its jobs.
        let mut panel = Panel::take(planes + slack);
        let src = panel.floats();
        src[planes..].fill(0.0);
        let jobs = g.groups * self.tiles * self.parts;
        for b in 0..g.b {
            let xb = &x[b * g.cin * hw..][..g.cin * hw];
            src[..planes]
                .par_chunks_mut(per_channel)
                .enumerate()
                .with_min_len(super::super::min_len(planes * g.kh * g.kw, g.cin))
                .for_each(|(i, dst)| {
                    let (t, ci) = (i / g.cin, i % g.cin);
                    self.fill(g, &xb[ci * hw..][..hw], t * self.rows, dst)
                });
            let src = &*src;
            super::super::par_jobs(jobs, p * g.cout * g.k()).for_each(|i| {
                let (grp, t, part) = (
                    i / (self.tiles * self.parts),
                    i / self.parts % self.tiles,
                    i % self.parts,
                );
                let rhs = src[t * per_run + grp * g.cin_g * per_channel..].as_ptr();
                job(b, grp, t, part, rhs);
            });
        }
    }

    /// The phase planes of one input plane for the run of output rows
    /// from `r0` into `dst`: per phase slot, `rows + halo` rows of `wq`
    /// (zero where the window is on padding, or past the last row).
    fn fill(&self, g: &Geom, src: &[f32], r0: usize, dst: &mut [f32]) {
        let (wq, plane) = (self.wq, self.plane());
        for (slot, &ph) in self.phases.iter().enumerate() {
            let (py, px) = (ph / g.sw, ph % g.sw);
            for (qr, row) in dst[slot * plane..][..plane]
                .chunks_exact_mut(wq)
                .enumerate()
            {
                // Phase row qr is padded row (r0 + qr) sh + py.
                let iy = ((r0 + qr) * g.sh + py).checked_sub(g.pt);
                match iy.filter(|&iy| iy < g.h) {
                    Some(iy) => phase_row(&src[iy * g.w..][..g.w], g.sw, px, g.pl, row),
                    None => row.fill(0.0),
                }
            }
        }
    }
}

/// `row[j] = line[j s + px - pl]` where that is inside `line`, else 0.
fn phase_row(line: &[f32], s: usize, px: usize, pl: usize, row: &mut [f32]) {
    // The j whose column is inside the line: a convolution's valid
    // outputs along an axis, for a tap at offset px.
    let (lo, hi) = Geom::valid(row.len(), line.len(), s, pl, px);
    row[..lo].fill(0.0);
    row[hi..].fill(0.0);
    if hi > lo {
        let first = lo * s + px - pl;
        let (src, dst) = (
            &line[first..first + (hi - lo - 1) * s + 1],
            &mut row[lo..hi],
        );
        if s == 1 {
            dst.copy_from_slice(src);
        } else {
            gather_strided(src, dst, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::Conv2dSpec;

    /// `act(conv(x, w) + bias)` by its definition, in f64.
    fn reference(g: &Geom, x: &[f32], w: &[f32], bias: &[f32], act: Epilogue) -> Vec<f32> {
        let mut y = vec![0.0f32; g.b * g.cout * g.p()];
        for b in 0..g.b {
            for co in 0..g.cout {
                let grp = co / g.cout_g;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut z = bias[co] as f64;
                        for ci in 0..g.cin_g {
                            let c = grp * g.cin_g + ci;
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                                    let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x
                                        [((b * g.cin + c) * g.h + iy as usize) * g.w + ix as usize];
                                    let wv = w[((co * g.cin_g + ci) * g.kh + ky) * g.kw + kx];
                                    z += xv as f64 * wv as f64;
                                }
                            }
                        }
                        let mut v = [z as f32];
                        crate::conv::math::epilogue(act, 0.0, &mut v);
                        y[((b * g.cout + co) * g.oh + oy) * g.ow + ox] = v[0];
                    }
                }
            }
        }
        y
    }

    /// Every stride up to 4, dilation, one-sided padding, groups, kernels
    /// wider than tall, `K` past the kernel's chunk (the output read back
    /// through the dropped columns), a 1x1 strided layer (no column
    /// dropped), runs of rows and output-channel parts for 1 to 3 threads,
    /// rows narrower than the columns dropped after them, and an activation
    /// applied after the product, against the definition.
    #[test]
    fn the_direct_lowering_equals_the_definition() {
        if !crate::rnn_kernel::has_avx512() {
            return;
        }
        let mut rand = crate::conv::kernel::test_values(11);
        let acts = [
            Epilogue::Relu,
            Epilogue::None,
            Epilogue::Sigmoid,
            Epilogue::LeakyRelu(0.1),
        ];
        // (x dims, cout, (kh, kw), stride, dilation, ((pt, pb), (pl, pr)), groups)
        type Case = (
            [usize; 4],
            usize,
            (usize, usize),
            (usize, usize),
            (usize, usize),
            ((usize, usize), (usize, usize)),
            usize,
        );
        let cases: [Case; 11] = [
            ([1, 2, 6, 3], 8, (7, 7), (1, 1), (1, 1), ((3, 3), (3, 3)), 1),
            (
                [1, 5, 17, 19],
                12,
                (3, 3),
                (2, 2),
                (1, 1),
                ((1, 1), (1, 1)),
                1,
            ),
            (
                [2, 3, 30, 23],
                9,
                (7, 7),
                (2, 2),
                (1, 1),
                ((3, 3), (3, 3)),
                1,
            ),
            (
                [1, 3, 35, 37],
                16,
                (11, 11),
                (4, 4),
                (1, 1),
                ((2, 2), (2, 2)),
                1,
            ),
            (
                [1, 70, 12, 13],
                20,
                (3, 3),
                (2, 2),
                (1, 1),
                ((1, 0), (0, 1)),
                1,
            ),
            (
                [2, 8, 16, 16],
                24,
                (1, 1),
                (2, 2),
                (1, 1),
                ((0, 0), (0, 0)),
                1,
            ),
            (
                [1, 6, 21, 18],
                10,
                (3, 3),
                (1, 1),
                (2, 2),
                ((2, 2), (2, 2)),
                2,
            ),
            (
                [1, 1, 40, 33],
                16,
                (3, 3),
                (1, 1),
                (1, 1),
                ((1, 1), (1, 1)),
                1,
            ),
            (
                [1, 9, 14, 27],
                17,
                (1, 5),
                (3, 2),
                (1, 1),
                ((0, 2), (2, 1)),
                1,
            ),
            ([3, 4, 9, 9], 8, (5, 5), (1, 1), (1, 1), ((2, 2), (2, 2)), 1),
            (
                [1, 4, 50, 7],
                9,
                (3, 3),
                (2, 1),
                (1, 3),
                ((1, 1), (3, 3)),
                1,
            ),
        ];
        for (i, &(xd, cout, (kh, kw), stride, dilation, padding, groups)) in
            cases.iter().enumerate()
        {
            let spec = Conv2dSpec {
                stride,
                padding,
                dilation,
                groups,
            };
            let g = Geom::new(&xd, &[cout, xd[1] / groups, kh, kw], None, &spec).unwrap();
            let x: Vec<f32> = (0..g.b * g.cin * g.hw()).map(|_| rand()).collect();
            let w: Vec<f32> = (0..cout * g.k()).map(|_| rand()).collect();
            let bias: Vec<f32> = (0..cout).map(|_| rand()).collect();
            let act = acts[i % acts.len()];
            let want = reference(&g, &x, &w, &bias, act);
            let packed = Packed::of(&w, &g);
            for threads in 1..=3 {
                let mut y = vec![f32::NAN; want.len()];
                Direct::new(&g, threads).run(
                    &g,
                    &x,
                    &packed,
                    Some(&bias),
                    act,
                    SyncPtr(y.as_mut_ptr()),
                );
                for (j, (a, b)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "case {i}, {threads} threads, output {j}: {a} against {b}"
                    );
                }
            }
        }
    }
}
