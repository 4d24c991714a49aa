//! The runtime's convolution against candle's, alternating in rounds in one
//! process, with a 1024^3 matmul measured in the same rounds as the ceiling.
//!
//! ```text
//! cargo bench -p netdsl-runtime --bench conv            # 21 rounds
//! BENCH_ROUNDS=41 RAYON_NUM_THREADS=2 cargo bench -p netdsl-runtime --bench conv
//! ```
//!
//! Prints a markdown table: median milliseconds of each side, GFLOP/s
//! (2 x multiply-adds), the fraction of the matmul ceiling, and the paired
//! speed-up (the median over rounds of candle's time / the runtime's time in
//! that round). `scripts/bench_conv_torch.py` times the same in PyTorch.

use std::hint::black_box;
use std::time::Instant;

use netdsl_runtime::candle::{Device, Tensor};
use netdsl_runtime::{conv2d, Conv2dSpec, Epilogue};

/// One timed side of a workload.
type Run = Box<dyn FnMut()>;

struct Work {
    name: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    pad: usize,
    groups: usize,
    /// bias + ReLU fused (runtime) vs candle conv, broadcast_add, relu
    relu: bool,
}

const fn work(
    name: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    pad: usize,
    groups: usize,
) -> Work {
    Work {
        name,
        x,
        w,
        stride,
        pad,
        groups,
        relu: false,
    }
}

const WORK: &[Work] = &[
    work(
        "3x3 64->64 56x56 b1",
        [1, 64, 56, 56],
        [64, 64, 3, 3],
        1,
        1,
        1,
    ),
    work(
        "3x3 64->64 56x56 b8",
        [8, 64, 56, 56],
        [64, 64, 3, 3],
        1,
        1,
        1,
    ),
    work(
        "3x3 256->256 14x14 b1",
        [1, 256, 14, 14],
        [256, 256, 3, 3],
        1,
        1,
        1,
    ),
    work(
        "1x1 256->64 56x56 b1",
        [1, 256, 56, 56],
        [64, 256, 1, 1],
        1,
        0,
        1,
    ),
    work(
        "7x7 s2 3->64 224x224 b1",
        [1, 3, 224, 224],
        [64, 3, 7, 7],
        2,
        3,
        1,
    ),
    work(
        "depthwise 3x3 32ch 112x112 b1",
        [1, 32, 112, 112],
        [32, 1, 3, 3],
        1,
        1,
        32,
    ),
    Work {
        relu: true,
        ..work(
            "3x3 64->64 56x56 b8 +bias+ReLU",
            [8, 64, 56, 56],
            [64, 64, 3, 3],
            1,
            1,
            1,
        )
    },
];

fn flops(w: &Work) -> f64 {
    let oh = (w.x[2] + 2 * w.pad - w.w[2]) / w.stride + 1;
    let ow = (w.x[3] + 2 * w.pad - w.w[3]) / w.stride + 1;
    2.0 * (w.x[0] * w.w[0] * oh * ow * w.w[1] * w.w[2] * w.w[3]) as f64
}

fn ms(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> netdsl_runtime::Result<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1.0, (1024, 1024), &dev)?;
    let b = Tensor::randn(0f32, 1.0, (1024, 1024), &dev)?;
    let mut matmul = || {
        black_box(a.matmul(&b).unwrap());
    };
    let mut jobs: Vec<(Run, Run)> = Vec::new();
    for w in WORK {
        let x = Tensor::randn(0f32, 1.0, &w.x, &dev)?;
        let k = Tensor::randn(0f32, 0.1, &w.w, &dev)?;
        let bias = Tensor::randn(0f32, 1.0, w.w[0], &dev)?;
        let spec = Conv2dSpec {
            stride: (w.stride, w.stride),
            padding: ((w.pad, w.pad), (w.pad, w.pad)),
            dilation: (1, 1),
            groups: w.groups,
        };
        let (x2, k2, b2) = (x.clone(), k.clone(), bias.clone());
        let (relu, s, p, g) = (w.relu, w.stride, w.pad, w.groups);
        let ours: Run = Box::new(move || {
            let y = if relu {
                conv2d(&x, &k, Some(&bias), &spec, Epilogue::Relu)
            } else {
                conv2d(&x, &k, None, &spec, Epilogue::None)
            };
            black_box(y.unwrap());
        });
        let theirs: Run = Box::new(move || {
            let y = x2.conv2d(&k2, p, s, 1, g).unwrap();
            let y = if relu {
                y.broadcast_add(&b2.reshape((1, (), 1, 1)).unwrap())
                    .unwrap()
                    .relu()
                    .unwrap()
            } else {
                y
            };
            black_box(y);
        });
        jobs.push((ours, theirs));
    }
    // warm-up
    for _ in 0..2 {
        matmul();
        for (o, t) in jobs.iter_mut() {
            o();
            t();
        }
    }
    let mut mm = Vec::new();
    let mut t_ours = vec![Vec::new(); WORK.len()];
    let mut t_candle = vec![Vec::new(); WORK.len()];
    for r in 0..rounds {
        mm.push(ms(&mut matmul));
        for (i, (o, t)) in jobs.iter_mut().enumerate() {
            if r % 2 == 0 {
                t_ours[i].push(ms(o.as_mut()));
                t_candle[i].push(ms(t.as_mut()));
            } else {
                t_candle[i].push(ms(t.as_mut()));
                t_ours[i].push(ms(o.as_mut()));
            }
        }
    }
    let mm_ms = median(&mut mm);
    let ceiling = 2.0 * 1024f64.powi(3) / mm_ms / 1e6;
    println!(
        "threads: {} (conv), rounds: {rounds}; 1024^3 matmul (candle/gemm): {mm_ms:.2} ms = {ceiling:.1} GFLOP/s (the ceiling)\n",
        netdsl_runtime::conv::threads()
    );
    println!("| workload | runtime ms | candle ms | runtime GFLOP/s | candle GFLOP/s | runtime / ceiling | candle / ceiling | speed-up (paired) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (i, w) in WORK.iter().enumerate() {
        let mut ratios: Vec<f64> = t_candle[i]
            .iter()
            .zip(&t_ours[i])
            .map(|(c, o)| c / o)
            .collect();
        let (o, c) = (median(&mut t_ours[i]), median(&mut t_candle[i]));
        let f = flops(w);
        let (go, gc) = (f / o / 1e6, f / c / 1e6);
        println!(
            "| {} | {o:.2} | {c:.2} | {go:.1} | {gc:.1} | {:.0}% | {:.0}% | {:.2}x |",
            w.name,
            100.0 * go / ceiling,
            100.0 * gc / ceiling,
            median(&mut ratios)
        );
    }
    Ok(())
}
