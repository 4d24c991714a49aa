//! The lecture's filter sheet: every filter of `network!` applied to a
//! bundled photograph, and the Fourier magnitude of the image before and
//! after a low and a high pass (the convolution theorem: a Gaussian blur
//! multiplies the spectrum by a Gaussian, keeping the low frequencies).
//!
//! ```text
//! cargo run --release --example filters -- --out filters.png
//! ```
//!
//! It prints `Filters::FUSIONS`: how the compiler chose to run each filter.

use clap::Parser;
use netdsl::candle::{Device, Tensor};
use netdsl::data::Photo;
use netdsl::network;
use netdsl::pictures::ImageSheet;

network! {
    /// Every filter of the lecture on a 256 x 256 gray photograph.
    pub Filters(x: [B, 1, 256, 256]) {
        let mean = x -> MeanFilter(5);
        let median = x -> Median(5);
        let low = x -> Gaussian(2.0);
        let wide = x -> Gaussian(6.0);
        let dx = x -> Sobel(x);
        let dy = x -> Sobel(y);
        let edges = x -> Sobel(magnitude);
        let lap = x -> Laplacian;
        let same = x -> Impulse(3);
        let moved = x -> Shift(20, 30, border = zeros);
        let high = x - low;
        cat(mean, median, low, wide, dx, dy, edges, lap, same, moved, high, dim = 1)
    }
}

#[derive(Parser)]
struct Args {
    /// Where to write the sheet.
    #[arg(long, default_value = "filters.png")]
    out: String,
    /// Add salt-and-pepper noise first (what the median removes best).
    #[arg(long, default_value_t = 0.05)]
    noise: f32,
}

/// `|DFT(x)|` of each `[H, W]` plane of `x` `[1, C, H, W]`, centred (the
/// zero frequency in the middle) and shown as `log(1 + |F|)` scaled to
/// [0, 1]: `F = (C_h - i S_h) x (C_w - i S_w)` with the DFT's cosine and
/// sine matrices, four real matrix products.
fn spectrum(x: &Tensor) -> netdsl::Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let dft = |n: usize| -> netdsl::Result<(Tensor, Tensor)> {
        let angle =
            |k: usize, j: usize| 2.0 * std::f64::consts::PI * ((k * j) % n) as f64 / n as f64;
        let cos: Vec<f32> = (0..n * n)
            .map(|i| angle(i / n, i % n).cos() as f32)
            .collect();
        let sin: Vec<f32> = (0..n * n)
            .map(|i| angle(i / n, i % n).sin() as f32)
            .collect();
        Ok((
            Tensor::from_vec(cos, (n, n), x.device())?,
            Tensor::from_vec(sin, (n, n), x.device())?,
        ))
    };
    let ((ch, sh), (cw, sw)) = (dft(h)?, dft(w)?);
    let mut planes = Vec::new();
    for i in 0..c {
        let p = x.get(0)?.get(i)?;
        // (C_h - i S_h) p (C_w - i S_w) = (C p C - S p S) - i (S p C + C p S)
        let (cp, sp) = (ch.matmul(&p)?, sh.matmul(&p)?);
        let re = (cp.matmul(&cw)? - sp.matmul(&sw)?)?;
        let im = (sp.matmul(&cw)? + cp.matmul(&sw)?)?;
        let mag = (re.sqr()? + im.sqr()?)?.sqrt()?;
        // Centre: roll by half the size on both axes.
        let mag = mag.roll((h / 2) as i32, 0)?.roll((w / 2) as i32, 1)?;
        let log = (mag + 1.0)?.log()?;
        let top = log.max_all()?.to_scalar::<f32>()?.max(1e-6);
        planes.push((log / top as f64)?);
    }
    Ok(Tensor::stack(&planes, 0)?.unsqueeze(0)?)
}

/// Each channel of `y` `[1, C, H, W]` scaled to [0, 1] for display:
/// `signed` outputs (derivatives, high pass) map 0 to mid-gray.
fn show(y: &Tensor, signed: bool) -> netdsl::Result<Tensor> {
    if signed {
        let top = y.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-6);
        Ok(((y / (2.0 * top as f64))? + 0.5)?)
    } else {
        let top = y.max_all()?.to_scalar::<f32>()?.max(1e-6);
        Ok((y / top as f64)?.clamp(0f32, 1f32)?)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dev = Device::Cpu;
    let x = Photo::Camera.load_gray(&dev)?;
    // Salt and pepper, from a fixed pattern (a hash of the pixel index).
    let (h, w) = (x.dim(2)?, x.dim(3)?);
    let noisy: Vec<f32> = x
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            // SplitMix64 of the index: a fixed, well-spread pattern.
            let mut z = (i as u64)
                .wrapping_add(1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let r = (z >> 40) as f32 / (1u64 << 24) as f32;
            if r < args.noise / 2.0 {
                0.0
            } else if r < args.noise {
                1.0
            } else {
                v
            }
        })
        .collect();
    let x = Tensor::from_vec(noisy, (1, 1, h, w), &dev)?;

    let net = Filters::new(&dev)?;
    let y = net.forward(&x)?;
    let captions = [
        ("mean 5x5", false),
        ("median 5x5", false),
        ("Gaussian sigma 2", false),
        ("Gaussian sigma 6", false),
        ("Sobel x", true),
        ("Sobel y", true),
        ("Sobel magnitude", false),
        ("Laplacian", true),
        ("impulse", false),
        ("shift (20, 30)", false),
        ("high pass: x - Gaussian", true),
    ];
    let mut sheet = ImageSheet::new().title("Filtering (network! filters, lecture 4)");
    sheet.push(&x, "input (5% salt and pepper)")?;
    for (i, (caption, signed)) in captions.iter().enumerate() {
        if i % 4 == 3 {
            sheet.next_row();
        }
        sheet.push(&show(&y.narrow(1, i, 1)?, *signed)?, *caption)?;
    }
    sheet.next_row();
    let clean = Photo::Camera.load_gray(&dev)?;
    let filtered = net.forward(&clean)?;
    let low = filtered.narrow(1, 2, 1)?;
    let high = filtered.narrow(1, 10, 1)?;
    sheet.push(&spectrum(&clean)?, "|F(x)|, log scale")?;
    sheet.push(&spectrum(&low)?, "|F(low pass)|")?;
    sheet.push(&spectrum(&high)?, "|F(high pass)|")?;
    let layout = sheet.save(&args.out)?;
    println!(
        "wrote {} ({} x {}); lowerings:\n{}",
        args.out,
        layout.width,
        layout.height,
        Filters::FUSIONS
    );
    Ok(())
}
