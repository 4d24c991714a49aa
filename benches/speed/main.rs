//! The Rust side of the speed harness, driven by `scripts/speed.py` (the one
//! command: `python3 scripts/speed.py`), which keeps this process warm and
//! alternates it, round by round, with PyTorch and ONNX Runtime.
//!
//! `cargo bench --bench speed -- --list` lists the workloads;
//! `-- --serve` answers the driver's commands on stdin, one per line, with
//! one line on stdout:
//!
//! - `load NAME` builds workload NAME (dropping the previous one): `ok`
//! - `run N` runs N steps: their times in ms, space-separated
//! - `layers MODEL B,C,H,W REPS` times each layer of MODEL's plan REPS
//!   times on the runtime's own ops: one JSON object per layer with the
//!   median `ms`, then `end`
//! - `ceiling` measures a 1024^3 matmul and a 256 MB copy: one JSON object
//! - `quit`
//!
//! `-- --mem NAME` builds NAME, runs three steps and prints the process's
//! peak resident memory (VmHWM) and its resident memory before building
//! (VmRSS), in MiB, as one JSON object.

use std::io::{BufRead, Write};
use std::time::Instant;

use netdsl::candle::{Device, Tensor};
use netdsl::network;

include!("../../examples/networks/lenet.rs");
include!("../../examples/networks/alexnet.rs");
include!("../../examples/networks/vgg16.rs");
include!("../../examples/networks/resnet18.rs");
include!("../networks/mobilenet_v2.rs");

#[allow(dead_code)]
#[path = "../../examples/common/restore_unet.rs"]
mod restore_unet;
use restore_unet::Restorer;

#[allow(dead_code)]
mod models;
use models::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_ms(step: &mut Step) -> R<f64> {
    let t = Instant::now();
    step()?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// `VmHWM` or `VmRSS` of this process, in MiB.
fn status_mib(key: &str) -> R<f64> {
    let s = std::fs::read_to_string("/proc/self/status")?;
    let line = s
        .lines()
        .find(|l| l.starts_with(key))
        .ok_or(format!("no {key} in /proc/self/status"))?;
    let kb: f64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("bad status line")?
        .parse()?;
    Ok(kb / 1024.0)
}

fn find(name: &str) -> R<Workload> {
    workloads()?
        .into_iter()
        .find(|w| w.name == name)
        .ok_or_else(|| format!("no workload `{name}` in workloads.json").into())
}

/// The matmul ceiling (candle's matmul, the `gemm` crate, 1024^3, best of
/// 5) and the memory bandwidth of a parallel copy of 256 MB (read + write
/// counted, best of 5), on the configured threads.
fn ceiling(dev: &Device) -> R<serde_json::Value> {
    let n = 1024;
    let a = Tensor::rand(-1f32, 1.0, (n, n), dev)?;
    let b = Tensor::rand(-1f32, 1.0, (n, n), dev)?;
    a.matmul(&b)?;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        a.matmul(&b)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let gflops = 2.0 * (n * n * n) as f64 / best / 1e9;

    let len = 64 << 20; // f32s: 256 MB
    let src = vec![1f32; len];
    let mut dst = vec![0f32; len];
    let threads = netdsl::candle::utils::get_num_threads().max(1);
    let chunk = len.div_ceil(threads);
    let mut best_copy = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for (d, sr) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                s.spawn(move || d.copy_from_slice(sr));
            }
        });
        best_copy = best_copy.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    let gbs = 2.0 * 4.0 * len as f64 / best_copy / 1e9;
    Ok(serde_json::json!({"matmul_gflops": gflops, "copy_gbs": gbs, "threads": threads}))
}

fn serve(dev: &Device) -> R<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut current: Option<Step> = None;
    for line in stdin.lock().lines() {
        let line = line?;
        let (cmd, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let reply = match cmd {
            "load" => {
                drop(current.take()); // free the previous workload first
                current = Some(build(&find(rest)?, dev)?);
                "ok".to_string()
            }
            "run" => {
                let n: usize = rest.parse()?;
                let step = current.as_mut().ok_or("run before load")?;
                let mut times = Vec::with_capacity(n);
                for _ in 0..n {
                    times.push(format!("{:.4}", time_ms(step)?));
                }
                times.join(" ")
            }
            "layers" => {
                let mut it = rest.split(' ');
                let model = it.next().ok_or("layers MODEL SHAPE REPS")?;
                let shape: Vec<usize> = it
                    .next()
                    .ok_or("layers MODEL SHAPE REPS")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
                let reps: usize = it.next().ok_or("layers MODEL SHAPE REPS")?.parse()?;
                for row in layer_plan(model, &shape)? {
                    let mut run = row.runner(dev)?;
                    run()?;
                    let ms = median((0..reps).map(|_| time_ms(&mut run)).collect::<R<_>>()?);
                    let mut j = row.to_json();
                    j["ms"] = serde_json::json!(ms);
                    writeln!(out, "{j}")?;
                }
                "end".to_string()
            }
            "ceiling" => ceiling(dev)?.to_string(),
            "quit" => break,
            _ => return Err(format!("unknown command `{line}`").into()),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}

fn main() -> R<()> {
    let dev = Device::Cpu;
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        for w in workloads()? {
            // Every workload must build: check the model is known here.
            if !MODELS.contains(&w.model.as_str()) {
                return Err(format!("{}: unknown model `{}`", w.name, w.model).into());
            }
            println!("{}", w.name);
        }
    } else if args.iter().any(|a| a == "--serve") {
        serve(&dev)?;
    } else if let Some(i) = args.iter().position(|a| a == "--mem") {
        let name = args.get(i + 1).ok_or("--mem NAME")?;
        let before = status_mib("VmRSS")?;
        let mut step = build(&find(name)?, &dev)?;
        for _ in 0..3 {
            step()?;
        }
        let peak = status_mib("VmHWM")?;
        println!(
            "{}",
            serde_json::json!({"peak_mib": peak, "start_mib": before})
        );
    } else {
        // `cargo bench` without arguments: the quick self-check, one step of
        // each small workload and the list.
        println!(
            "speed harness: run `python3 scripts/speed.py` (threads: {})",
            netdsl::candle::utils::get_num_threads()
        );
        for w in workloads()? {
            println!("  {}", w.name);
        }
    }
    Ok(())
}
