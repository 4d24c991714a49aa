//! What the AlexNet and VGG-16 examples share: reading an image into
//! torchvision's ImageNet input (resize the shorter side to 256, centre crop
//! 224, normalise with ImageNet's mean and standard deviation), or a random
//! one, and printing the top five classes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use netdsl::candle::{Device, Tensor};

pub type Error = Box<dyn std::error::Error>;

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `[1, 3, 224, 224]`, normalised as torchvision's ImageNet weights expect.
pub fn load_image(path: &Path, device: &Device) -> Result<Tensor, Error> {
    let img = image::open(path)
        .map_err(|e| format!("cannot read the image `{}`: {e}", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let scale = 256.0 / w.min(h) as f32;
    let (nw, nh) = (
        ((w as f32 * scale).round() as u32).max(224),
        ((h as f32 * scale).round() as u32).max(224),
    );
    let img = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
    let (left, top) = ((nw - 224) / 2, (nh - 224) / 2);
    let mut data = vec![0f32; 3 * 224 * 224];
    for y in 0..224 {
        for x in 0..224 {
            let p = img.get_pixel(left + x, top + y);
            for c in 0..3 {
                data[c * 224 * 224 + (y * 224 + x) as usize] =
                    (p[c] as f32 / 255.0 - MEAN[c]) / STD[c];
            }
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, 224, 224), device)?)
}

/// A seeded random image (standard normal, like a normalised image).
pub fn random_image(seed: u64, device: &Device) -> Result<Tensor, Error> {
    let v = netdsl::Rng::stream(seed, "image").normal_vec(3 * 224 * 224, 1.0);
    Ok(Tensor::from_vec(v, (1, 3, 224, 224), device)?)
}

/// The five largest logits: (class index, probability).
pub fn top5(logits: &Tensor) -> Result<Vec<(usize, f32)>, Error> {
    let probs: Vec<f32> = netdsl::candle_nn::ops::softmax(&logits.squeeze(0)?, 0)?.to_vec1()?;
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    Ok(idx.into_iter().take(5).map(|i| (i, probs[i])).collect())
}

#[derive(Parser, Debug)]
pub struct Args {
    /// torchvision's state_dict as safetensors (default: PyTorch-style random init).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// An image (PNG or JPEG); default: a seeded random image.
    #[arg(long)]
    pub image: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Timed forward passes after one warm-up.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

/// The whole example for one network: summary, weights (loaded or seeded),
/// an image, top-5 and the median forward time.
pub fn run<N>(
    summary: &str,
    load: impl Fn(&Path, &Device) -> netdsl::Result<N>,
    new_seeded: impl Fn(u64, &Device) -> netdsl::Result<N>,
    forward: impl Fn(&N, &Tensor) -> netdsl::Result<Tensor>,
) -> Result<(), Error> {
    let args = Args::parse();
    let device = Device::Cpu;
    println!("{summary}");
    let net = match &args.weights {
        Some(path) => load(path, &device)?,
        None => {
            println!(
                "no --weights: random PyTorch-style initialisation (the classes mean nothing)"
            );
            new_seeded(args.seed, &device)?
        }
    };
    let x = match &args.image {
        Some(path) => load_image(path, &device)?,
        None => random_image(args.seed, &device)?,
    };
    let logits = forward(&net, &x)?;
    let mut times = Vec::new();
    for _ in 0..args.runs.max(1) {
        let start = Instant::now();
        drop(forward(&net, &x)?);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!("top-5 ImageNet classes (index: probability):");
    for (class, p) in top5(&logits)? {
        println!("  {class:>4}: {p:.4}");
    }
    println!(
        "forward: {:.1} ms (median of {})",
        times[times.len() / 2],
        times.len()
    );
    Ok(())
}
