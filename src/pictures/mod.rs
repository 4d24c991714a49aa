//! Pictures with text, as PNG: training curves ([`TrainingCurve`]) and
//! captioned grids of images ([`ImageSheet`]).
//!
//! All text is drawn in DejaVu Sans, shipped in the crate
//! (`assets/fonts/DejaVuSans.ttf`, a 27 KiB subset: Latin-1, Greek, dashes,
//! quotes, arrows; licence beside it) and rasterised by the pure-Rust
//! `ab_glyph`, so a fresh machine needs no system font and no C library.
//! plotters draws the curves' lines and grid; all text is placed here.
//! Behind the default `pictures` feature; `default-features = false` drops
//! plotters, ab_glyph and image from the build.
//!
//! ```no_run
//! use netdsl::pictures::{ImageSheet, TrainingCurve};
//! # use netdsl::candle::{Device, Tensor};
//! # fn main() -> Result<(), netdsl::pictures::PictureError> {
//! let (loss, accuracy) = ([0.9, 0.3, 0.2], [91.0, 96.5, 97.8]);
//! TrainingCurve::new("LeNet-5 on the digits")
//!     .left("training loss", &loss)
//!     .right("held-out accuracy (%)", &accuracy)
//!     .save("target/curve.png")?;
//!
//! let noisy = Tensor::rand(0f32, 1.0, (2, 1, 28, 28), &Device::Cpu)?;
//! let mut sheet = ImageSheet::new().title("Denoising").scale(4);
//! sheet.row(&noisy, ["noisy 10.3 dB", "noisy 10.1 dB"])?;
//! sheet.save("target/sheet.png")?;
//! # Ok(())
//! # }
//! ```

mod curve;
mod sheet;
mod text;

use std::path::{Path, PathBuf};

use crate::candle::{DType, Device, Tensor};

pub use curve::TrainingCurve;
/// The picture `render` returns (image 0.24's 8-bit RGB buffer).
pub use image::RgbImage;
pub use sheet::{CellLayout, ImageSheet, Rect, SheetLayout};

/// What can go wrong drawing, writing or reading a picture.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("cannot read `{}` as an image: {source}", path.display())]
    Read {
        path: PathBuf,
        source: image::ImageError,
    },
    /// A tensor that is not an image, a curve with no points, and the like.
    #[error("{0}")]
    Input(String),
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("the bundled font assets/fonts/DejaVuSans.ttf does not parse")]
    Font,
    #[error(transparent)]
    Candle(#[from] crate::candle::Error),
}

fn draw_error(e: impl std::fmt::Display) -> PictureError {
    PictureError::Draw(e.to_string())
}

/// Writes `img` as a PNG at `path`, creating its folder.
fn write_png(img: &image::RgbImage, path: &Path) -> Result<(), PictureError> {
    let write = |source| PictureError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| write(image::ImageError::IoError(e)))?;
    }
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(write)
}

/// Reads a PNG (or any format the build of `image` decodes) as a
/// `[1, C, H, W]` f32 tensor in [0, 1]: `C` is 1 for grayscale files, 3
/// otherwise (alpha is dropped).
pub fn read_image(path: impl AsRef<Path>, device: &Device) -> Result<Tensor, PictureError> {
    let path = path.as_ref();
    let img = image::open(path).map_err(|source| PictureError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (c, bytes) = if img.color().has_color() {
        (3, img.into_rgb8().into_raw())
    } else {
        (1, img.into_luma8().into_raw())
    };
    // HWC bytes -> CHW floats.
    let hwc = Tensor::from_vec(bytes, (h, w, c), &Device::Cpu)?;
    let chw = (hwc.permute((2, 0, 1))?.to_dtype(DType::F32)? / 255.0)?;
    Ok(chw.unsqueeze(0)?.to_device(device)?)
}

/// `[C, H, W]` or `[1, C, H, W]` with C = 1 or 3, values in [0, 1] (clamped),
/// as an RGB image.
fn to_rgb(image: &Tensor) -> Result<image::RgbImage, PictureError> {
    let image = match image.rank() {
        3 => image.clone(),
        4 if image.dim(0)? == 1 => image.squeeze(0)?,
        _ => {
            return Err(PictureError::Input(format!(
                "an image is [C, H, W] or [1, C, H, W] with C = 1 or 3, got {:?}",
                image.dims()
            )))
        }
    };
    let (c, h, w) = image.dims3()?;
    if c != 1 && c != 3 {
        return Err(PictureError::Input(format!(
            "an image has 1 (gray) or 3 (RGB) channels, got {c} in {:?}",
            image.dims()
        )));
    }
    let bytes: Vec<u8> = (image.to_dtype(DType::F32)?.clamp(0f32, 1f32)? * 255.0)?
        .round()?
        .permute((1, 2, 0))?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1()?;
    let rgb = if c == 3 {
        bytes
    } else {
        bytes.iter().flat_map(|&v| [v, v, v]).collect()
    };
    image::RgbImage::from_raw(w as u32, h as u32, rgb)
        .ok_or_else(|| PictureError::Input("image buffer of the wrong size".into()))
}
