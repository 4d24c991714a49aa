//! What the restoration examples share (`restore.rs` trains, `unet.rs` runs
//! the trained weights): the same-padded U-Net, the held-out split and its
//! noise, PSNR, the captioned sheet of clean, noisy and restored digits, and
//! where the trained weights live.

use netdsl::candle::{Device, Tensor};
use netdsl::data::Digits;
use netdsl::network;
use netdsl::pictures::ImageSheet;

pub type Error = Box<dyn std::error::Error>;

/// The digits that ship with the repository.
pub const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.bin");
/// Standard deviation of the Gaussian noise added to images in [0, 1].
pub const SIGMA: f32 = 0.3;
/// Where `restore` saves the trained weights, and `unet` looks for them.
pub const WEIGHTS: &str = "target/restore/restore_unet.safetensors";
/// How many held-out digits the PNG images show, in a row.
pub const SHOWN: usize = 8;

network! {
    /// Two same-padded 3x3 convolutions with ReLU: one U-Net level. One
    /// struct serves every width it is used at.
    pub block DoubleConv(x: [B, C, H, W], out: usize) -> [B, out, H, W] {
        x -> conv: seq { Conv2d(out, kernel = 3, padding = 1) -> ReLU -> Conv2d(out, kernel = 3, padding = 1) -> ReLU }
    }

    /// A two-level U-Net for restoration over any image size that two 2x2
    /// poolings divide (`forward` checks H and W are multiples of 4): same
    /// padding keeps the size, skips are concatenated without cropping, and
    /// the output is a residual added to the input. Strict: at a known size
    /// no pooling may drop a row (at symbolic H and W, `forward` already
    /// requires multiples of 4).
    #[netdsl(strict)]
    pub Restorer(x: [B, 1, H, W]) -> [B, 1, H, W] {
        let e1 = x -> enc1: DoubleConv(16);
        let e2 = e1 -> max_pool(2) -> enc2: DoubleConv(32)                                    : [B, 32, H/2, W/2];
        let b = e2 -> max_pool(2) -> mid: seq { Conv2d(64, kernel = 3, padding = 1) -> ReLU } : [B, 64, H/4, W/4];
        let u2 = b -> up2: ConvTranspose2d(32, kernel = 2, stride = 2);
        let d2 = cat(e2, u2, dim = 1) -> dec2: seq { Conv2d(32, kernel = 3, padding = 1) -> ReLU };
        let u1 = d2 -> up1: ConvTranspose2d(16, kernel = 2, stride = 2);
        let r = cat(e1, u1, dim = 1) -> dec1: seq { Conv2d(16, kernel = 3, padding = 1) -> ReLU } -> out: Conv2d(1, kernel = 1);
        x + r
    }
}

/// Noise drawn from the runtime's seeded generator: the same every run.
pub fn noisy(clean: &Tensor, sigma: f32, rng: &mut netdsl::Rng) -> Result<Tensor, Error> {
    let noise = rng.normal_vec(clean.elem_count(), sigma);
    Ok((clean + Tensor::from_vec(noise, clean.shape(), clean.device())?)?)
}

/// The held-out fifth of the digits (scaled x3 into 28x28) and a noisy copy
/// of it: `(training indices, clean, noisy, noise generator)`. The generator
/// is returned so that training noise continues from it; the same seed and
/// sigma give the same images in both examples.
pub fn held_out(
    data: &Digits,
    seed: u64,
    sigma: f32,
    device: &Device,
) -> Result<(Vec<usize>, Tensor, Tensor, netdsl::Rng), Error> {
    let (train, test) = data.split(0.2, seed);
    let (clean, _) = data.batch(&test, 3, 28, device)?;
    let mut rng = netdsl::Rng::stream(seed, "noise");
    let noisy = noisy(&clean, sigma, &mut rng)?;
    Ok((train, clean, noisy, rng))
}

/// Peak signal-to-noise ratio in dB for images in [0, 1].
pub fn psnr(a: &Tensor, b: &Tensor) -> Result<f64, Error> {
    let mse: f32 = a.sub(b)?.sqr()?.mean_all()?.to_scalar()?;
    Ok(10.0 * (1.0 / mse as f64).log10())
}

/// Three rows of the same digits (`[N, 1, H, W]` each), enlarged x4: clean,
/// noisy and restored, each noisy or restored digit captioned with its own
/// PSNR against the clean one ("noisy 10.3 dB", "restored 20.8 dB").
pub fn sheet(
    title: String,
    clean: &Tensor,
    noisy: &Tensor,
    restored: &Tensor,
) -> Result<ImageSheet, Error> {
    let mut sheet = ImageSheet::new().title(title).scale(4);
    let n = clean.dim(0)?;
    sheet.row(clean, (0..n).map(|_| "clean"))?;
    for (name, images) in [("noisy", noisy), ("restored", restored)] {
        let captions = (0..n)
            .map(|i| {
                Ok(format!(
                    "{name} {:.1} dB",
                    psnr(&images.get(i)?, &clean.get(i)?)?
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        sheet.row(images, captions)?;
    }
    Ok(sheet)
}
