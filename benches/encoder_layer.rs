//! The Attention issue's transformer benchmarks, in inference: the encoder
//! layer (d = 256, 8 heads, FFN 1024, post-norm, ReLU, as
//! `nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True)`) at batch 16,
//! T = 128, and ViT-B/16 (torchvision's `vit_b_16`) at batch 1. Driven round
//! by round against PyTorch by `scripts/bench_transformer.py`; alone:
//!
//! ```text
//! cargo bench --bench encoder_layer -- encoder 5
//! cargo bench --bench encoder_layer -- vit 5
//! ```
//!
//! prints the times of 5 forwards (after one warm-up), in ms,
//! space-separated.

use netdsl::candle::{Device, Tensor};
use netdsl::network;

include!("../examples/networks/vit.rs");

network! {
    /// `nn.TransformerEncoderLayer(256, 8, 1024, batch_first = True)`.
    block EncoderLayer(x: [B, T, E], heads: usize, ff: usize, p: f64 = 0.1) -> [B, T, E] {
        let a = x -> self_attn: MultiHeadAttention(heads = heads) -> dropout1: Dropout(p);
        let y = (x + a) -> norm1: LayerNorm(eps = 1e-5);
        let f = y -> linear1: Linear(ff) -> relu -> dropout: Dropout(p)
                  -> linear2: Linear(E) -> dropout2: Dropout(p);
        (y + f) -> norm2: LayerNorm
    }

    BenchLayer(x: [B, 128, 256]) -> [B, 128, 256] { x -> layer: EncoderLayer(heads = 8, ff = 1024) }
}

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// `n` timed forwards in inference mode after one warm-up, in ms.
macro_rules! forwards {
    ($ty:ty, $shape:expr, $n:expr) => {{
        let dev = Device::Cpu;
        let mut net = <$ty>::new_seeded(0, &dev)?;
        net.eval();
        let x = Tensor::rand(0f32, 1.0, $shape, &dev)?;
        let mut times = Vec::new();
        for i in 0..=$n {
            let t = std::time::Instant::now();
            net.forward(&x)?;
            if i > 0 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
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
    let model = args.first().map_or("encoder", String::as_str);
    let n: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(7);
    let times = match model {
        "encoder" => forwards!(BenchLayer, (16, 128, 256), n),
        "vit" => forwards!(VitB16, (1, 3, 224, 224), n),
        m => return Err(format!("unknown model `{m}`: encoder or vit").into()),
    };
    let text: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
    println!("{}", text.join(" "));
    Ok(())
}
