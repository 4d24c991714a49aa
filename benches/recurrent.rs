//! The Sequences issue's recurrent benchmark: a 2-layer LSTM and GRU
//! (input 128, hidden 256, T = 100, batch 32, batch-first) written in
//! `network!`, forward in inference and a training step (forward, the
//! cross-entropy of the last step's output, backward, SGD). Driven round by
//! round against PyTorch by `scripts/bench_recurrent.py`; alone:
//!
//! ```text
//! cargo bench --bench recurrent -- lstm infer 5
//! ```
//!
//! prints the times of 5 steps (after one warm-up), in ms, space-separated.

use netdsl::candle::{Device, Tensor};
use netdsl::network;
use netdsl::train::{cross_entropy, Optimizer, Sgd, SgdConfig};

network! {
    /// `nn.LSTM(128, 256, num_layers=2, batch_first=True)`, the last step.
    pub LstmBench(x: [B, T, 128]) -> [B, 256] { x -> lstm: LSTM(256, layers = 2) -> Select(1, -1) }
    /// `nn.GRU(128, 256, num_layers=2, batch_first=True)`, the last step.
    pub GruBench(x: [B, T, 128]) -> [B, 256] { x -> gru: GRU(256, layers = 2) -> Select(1, -1) }
}

type R<T> = Result<T, Box<dyn std::error::Error>>;

macro_rules! steps {
    ($ty:ty, $train:expr, $n:expr) => {{
        let dev = Device::Cpu;
        let mut net = <$ty>::new_seeded(0, &dev)?;
        let x = Tensor::rand(0f32, 1.0, (32, 100, 128), &dev)?;
        let mut times = Vec::new();
        if $train {
            net.train();
            let y: Vec<u32> = (0..32u32).map(|i| (i * 7) % 256).collect();
            let y = Tensor::from_vec(y, 32, &dev)?;
            let cfg = SgdConfig {
                lr: 0.01,
                momentum: 0.9,
                ..Default::default()
            };
            let mut opt = Sgd::new(net.vars()?, cfg)?;
            for i in 0..=$n {
                let t = std::time::Instant::now();
                let loss = cross_entropy(&net.forward(&x)?, &y, 0.0)?;
                opt.backward_step(&loss)?;
                if i > 0 {
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        } else {
            for i in 0..=$n {
                let t = std::time::Instant::now();
                net.forward(&x)?;
                if i > 0 {
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        times
    }};
}

fn main() -> R<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let model = args.first().map_or("lstm", String::as_str);
    let train = args.get(1).is_some_and(|k| k == "train");
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5);
    let times = match model {
        "lstm" => steps!(LstmBench, train, n),
        "gru" => steps!(GruBench, train, n),
        m => return Err(format!("unknown model `{m}`: lstm or gru").into()),
    };
    let text: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
    println!("{}", text.join(" "));
    Ok(())
}
