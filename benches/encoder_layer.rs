//! The Attention issue's encoder layer (d = 256, 8 heads, FFN 1024, post-norm,
//! ReLU) at batch 16, T = 128, in inference: the median of 7 timed runs after
//! a warm-up.
//!
//! ```text
//! cargo bench --bench encoder_layer
//! ```

use netdsl::candle::{Device, Tensor};
use netdsl::network;

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let net = BenchLayer::new_seeded(0, &dev)?;
    let x = Tensor::randn(0f32, 1.0, (16, 128, 256), &dev)?;
    net.forward(&x)?;
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = std::time::Instant::now();
        net.forward(&x)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "encoder layer d=256 h=8 ff=1024 [16, 128, 256]: median {:.1} ms, min {:.1} ms",
        times[3], times[0]
    );
    Ok(())
}
