//! What the AlexNet and VGG-16 examples share: reading an image into
//! torchvision's ImageNet input (resize the shorter side to 256, centre crop
//! 224, normalise with ImageNet's mean and standard deviation), or a random
//! one, and printing the top five classes.

use std::path::Path;

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
