//! The Filters issue's speed comparison, the Rust side: a Gaussian of
//! `k x k` taps (the compiler's kernel, `sigma = (k - 1) / 8`, so that the
//! default radius `4 sigma` gives `k`) on one `n x n` channel with the
//! `reflect` border, in the form the cost model chooses (`auto`) or a
//! forced one, and the 5 x 5 median (`replicate`, as OpenCV's `medianBlur`).
//! Driven over a pipe, round by round against PyTorch and OpenCV, by
//! `scripts/bench_filters.py`; alone:
//!
//! ```text
//! cargo bench --bench filter_speed
//! > gauss 512 31 auto 5
//! ```
//!
//! Each stdin line `gauss N K FORM STEPS` or `median N 5 - STEPS` answers
//! one line: the form that ran, then the times of STEPS calls after one
//! warm-up, in ms. FORM is `auto`, `direct`, `separable`, `banded` or `fft`.
//! `costs N K` answers the cost model's estimates, in us; `shift N FORM
//! STEPS` times a one-tap 3 x 3 kernel (`reflect`) as `tap` or `direct`.

use std::io::{BufRead, Write};
use std::time::Instant;

use netdsl::candle::{Device, Tensor};
use netdsl_compiler::ops::filter::{self as model, Kernel};
use netdsl_runtime::{filter2d, median2d, Border, FilterSpec, Lowering, Taps};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn gaussian(k: u64) -> Kernel {
    let sigma = (k as f64 - 1.0) / 8.0;
    let r = (k - 1) / 2;
    let g = model::gaussian_1d(sigma, r);
    let full = g
        .iter()
        .flat_map(|a| g.iter().map(move |b| a * b))
        .collect();
    Kernel::new(k, k, full)
}

fn lowering(name: &str, k: &Kernel, n: u64) -> R<(model::Lowering, Lowering)> {
    let l = match name {
        "auto" => model::choose(k, Some(((n, n), (n, n))), model::Border::Reflect).0,
        "direct" => model::Lowering::Direct,
        "separable" => model::Lowering::Separable,
        "banded" => model::Lowering::Banded,
        "fft" => model::Lowering::Fft,
        _ => return Err(format!("unknown form {name}").into()),
    };
    let rt = match l {
        model::Lowering::Direct => Lowering::Direct,
        model::Lowering::Separable => Lowering::Separable,
        model::Lowering::Banded => Lowering::Banded,
        model::Lowering::Fft => Lowering::Fft,
        model::Lowering::Tap => return Err("a Gaussian has more than one tap".into()),
    };
    Ok((l, rt))
}

fn time(steps: usize, mut f: impl FnMut() -> R<()>) -> R<Vec<f64>> {
    f()?;
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        f()?;
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

fn answer(line: &str) -> R<String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let dev = Device::Cpu;
    match w.as_slice() {
        ["gauss", n, k, form, steps] => {
            let (n, k, steps): (u64, u64, usize) = (n.parse()?, k.parse()?, steps.parse()?);
            let kern = gaussian(k);
            let (name, l) = lowering(form, &kern, n)?;
            let x = Tensor::rand(0f32, 1.0, (1, 1, n as usize, n as usize), &dev)?;
            let (col, row) = kern.factors.clone().ok_or("a Gaussian is rank one")?;
            let f32s = |v: &[f64]| v.iter().map(|a| *a as f32).collect::<Vec<f32>>();
            let (col, row, full) = (f32s(&col), f32s(&row), f32s(&kern.values));
            // As the compiler writes a rank-one kernel of more than one tap.
            let taps = if k == 1 {
                Taps::Full(&full)
            } else {
                Taps::Outer {
                    col: &col,
                    row: &row,
                }
            };
            let r = ((k - 1) / 2) as usize;
            let spec = FilterSpec {
                taps,
                size: (k as usize, k as usize),
                pad: ((r, r), (r, r)),
                border: Border::Reflect,
                lowering: l,
            };
            let t = time(steps, || {
                filter2d(&x, &spec)?;
                Ok(())
            })?;
            Ok(format!("{} {}", name.name(), join(&t)))
        }
        ["median", n, k, _, steps] => {
            let (n, k, steps): (usize, usize, usize) = (n.parse()?, k.parse()?, steps.parse()?);
            let x = Tensor::rand(0f32, 1.0, (1, 1, n, n), &dev)?;
            let r = (k - 1) / 2;
            let t = time(steps, || {
                median2d(&x, (k, k), ((r, r), (r, r)), Border::Replicate)?;
                Ok(())
            })?;
            Ok(format!("median {}", join(&t)))
        }
        ["shift", n, form, steps] => {
            // A 3 x 3 kernel with one tap (`Shift(1, 1)`), `reflect`.
            let (n, steps): (usize, usize) = (n.parse()?, steps.parse()?);
            let x = Tensor::rand(0f32, 1.0, (1, 1, n, n), &dev)?;
            let mut k = [0f32; 9];
            k[0] = 1.0;
            let lowering = match *form {
                "tap" => Lowering::Tap { t: 0, s: 0 },
                "fft" => Lowering::Fft,
                _ => Lowering::Direct,
            };
            let spec = FilterSpec {
                taps: Taps::Full(&k),
                size: (3, 3),
                pad: ((1, 1), (1, 1)),
                border: Border::Reflect,
                lowering,
            };
            let t = time(steps, || {
                filter2d(&x, &spec)?;
                Ok(())
            })?;
            Ok(format!("{form} {}", join(&t)))
        }
        ["costs", n, k] => {
            let (n, k): (u64, u64) = (n.parse()?, k.parse()?);
            let kern = gaussian(k);
            let (_, costs) = model::choose(&kern, Some(((n, n), (n, n))), model::Border::Reflect);
            let v: Vec<String> = costs
                .iter()
                .map(|(l, us)| format!("{}={us:.1}", l.name()))
                .collect();
            Ok(v.join(" "))
        }
        _ => Err(format!("cannot read `{line}`").into()),
    }
}

fn join(t: &[f64]) -> String {
    t.iter()
        .map(|v| format!("{v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> R<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() || line.starts_with("--") {
            continue;
        }
        let reply = answer(&line).unwrap_or_else(|e| format!("error {e}"));
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
