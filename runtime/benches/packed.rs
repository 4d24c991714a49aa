//! The packed kernel (`rnn_kernel`: the recurrent layers' products and
//! `linear` from 512 rows) alone, in GFLOP/s (2 x multiply-adds), at the
//! shapes the LSTM, transformer and ViT benchmarks give it: median of
//! `BENCH_ROUNDS` runs (default 15) after one warm-up, weights packed once
//! (as the recurrent layers do per call) and packing timed apart; and, for
//! one product, candle's matmul (the `gemm` crate), what `linear` runs
//! below its packed-kernel threshold, in the same rounds.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench -p netdsl-runtime --bench packed
//! ```

use std::hint::black_box;
use std::time::Instant;

use netdsl_runtime::candle::{Device, Tensor};
use netdsl_runtime::rnn_kernel::{recurrent, Packed};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    println!("| product | rows x k x cols | repeats | ms | GFLOP/s | pack ms | candle matmul ms (one product) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    // (name, rows, k, cols, repeats: products per timed run, as a sequence's steps)
    for (name, rows, k, cols, repeats) in [
        ("LSTM step (T = 100)", 32, 256, 1024, 100),
        ("LSTM layer-1 input projection", 3200, 128, 1024, 1),
        ("LSTM layer-2 input projection", 3200, 256, 1024, 1),
        ("encoder Q/K/V", 2048, 256, 768, 1),
        ("encoder FFN up", 2048, 256, 1024, 1),
        ("encoder FFN down", 2048, 1024, 256, 1),
        ("ViT-B/16 Q/K/V (b1)", 197, 768, 2304, 1),
        ("ViT-B/16 MLP up (b1)", 197, 768, 3072, 1),
        ("ViT-B/16 MLP down (b1)", 197, 3072, 768, 1),
        ("ViT-B/16 Q/K/V (b1), 64 rows", 64, 768, 2304, 1),
    ] {
        let w: Vec<f32> = (0..cols * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.01)
            .collect();
        let h: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1)
            .collect();
        let mut dst = vec![0.0f32; rows * cols];
        let xt = Tensor::from_vec(h.clone(), (rows, k), &Device::Cpu).unwrap();
        let wt = Tensor::from_vec(w.clone(), (cols, k), &Device::Cpu).unwrap();
        let mut packs = Vec::new();
        let mut times = Vec::new();
        let mut candle = Vec::new();
        for round in 0..=rounds {
            let t = Instant::now();
            let packed = Packed::new(&w, cols, k);
            let pack = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            for _ in 0..repeats {
                recurrent(&mut dst, true, black_box(&h), rows, &packed);
            }
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            black_box(xt.matmul(&wt.t().unwrap()).unwrap());
            let mm = t.elapsed().as_secs_f64() * 1e3;
            if round > 0 {
                packs.push(pack);
                times.push(ms);
                candle.push(mm);
            }
        }
        black_box(&dst);
        let ms = median(times);
        let flops = 2.0 * (rows * k * cols * repeats) as f64;
        println!(
            "| {name} | {rows} x {k} x {cols} | {repeats} | {ms:.2} | {:.1} | {:.2} | {:.2} |",
            flops / ms / 1e6,
            median(packs),
            median(candle)
        );
    }
}
