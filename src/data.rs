//! Small datasets for the examples and tests, read from files shipped with
//! the repository, with clear errors for bad files.

use std::path::{Path, PathBuf};

use crate::candle::{Device, Tensor};
use netdsl_runtime::Rng;

/// What can be wrong with a dataset file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not a digits file: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("`{}`: image {index} has label {label}, but labels must be 0..=9", path.display())]
    Label {
        path: PathBuf,
        index: usize,
        label: u8,
    },
    #[error(transparent)]
    Candle(#[from] crate::candle::Error),
    #[cfg(feature = "pictures")]
    #[error(transparent)]
    Picture(#[from] crate::pictures::PictureError),
}

/// Handwritten digits: `count` images of `height x width` pixels in 0..=16,
/// with labels 0..=9 (the format `scripts/gen_digits.py` writes).
#[derive(Debug, Clone)]
pub struct Digits {
    pub height: usize,
    pub width: usize,
    /// Row-major pixels, `height * width` per image.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Digits {
    /// Reads a digits file, checking its header, size and every label.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let format = |message: String| DataError::Format {
            path: path.to_path_buf(),
            message,
        };
        if bytes.len() < 16 || &bytes[..4] != b"NDIG" {
            return Err(format("it does not start with the `NDIG` header".into()));
        }
        let word = |i: usize| {
            u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize
        };
        let (count, height, width) = (word(4), word(8), word(12));
        let record = height * width + 1;
        let expected = 16 + count * record;
        if bytes.len() != expected {
            return Err(format(format!(
                "the header announces {count} images of {height}x{width} ({expected} bytes), \
                 but the file has {} bytes{}",
                bytes.len(),
                if bytes.len() < expected {
                    " (truncated?)"
                } else {
                    ""
                }
            )));
        }
        let mut pixels = Vec::with_capacity(count * (record - 1));
        let mut labels = Vec::with_capacity(count);
        for (index, rec) in bytes[16..].chunks_exact(record).enumerate() {
            let label = rec[record - 1];
            if label > 9 {
                return Err(DataError::Label {
                    path: path.to_path_buf(),
                    index,
                    label,
                });
            }
            pixels.extend_from_slice(&rec[..record - 1]);
            labels.push(label);
        }
        Ok(Self {
            height,
            width,
            pixels,
            labels,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A seeded shuffle of the image indices, split into `(train, test)` with
    /// `test_fraction` of the images held out.
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        shuffle(&mut idx, &mut Rng::stream(seed, "split"));
        let n_test = ((self.len() as f64) * test_fraction).round() as usize;
        let test = idx.split_off(self.len() - n_test);
        (idx, test)
    }

    /// Images `indices` as a `[N, 1, size, size]` tensor in [0, 1]: each
    /// pixel scaled by `scale` (nearest neighbour) and centred with zero
    /// padding (8x8 digits at scale 3 in 28x28 give LeNet's input), and their
    /// labels as a `[N]` u32 tensor.
    pub fn batch(
        &self,
        indices: &[usize],
        scale: usize,
        size: usize,
        device: &Device,
    ) -> Result<(Tensor, Tensor), DataError> {
        let (h, w) = (self.height * scale, self.width * scale);
        if h > size || w > size {
            return Err(DataError::Format {
                path: PathBuf::new(),
                message: format!("{h}x{w} scaled images do not fit in {size}x{size}"),
            });
        }
        let (top, left) = ((size - h) / 2, (size - w) / 2);
        let mut data = vec![0f32; indices.len() * size * size];
        for (n, &i) in indices.iter().enumerate() {
            let img =
                &self.pixels[i * self.height * self.width..(i + 1) * self.height * self.width];
            let out = &mut data[n * size * size..(n + 1) * size * size];
            for y in 0..h {
                for x in 0..w {
                    out[(top + y) * size + left + x] =
                        img[(y / scale) * self.width + x / scale] as f32 / 16.0;
                }
            }
        }
        let labels: Vec<u32> = indices.iter().map(|&i| self.labels[i] as u32).collect();
        let x = Tensor::from_vec(data, (indices.len(), 1, size, size), device)?;
        let y = Tensor::from_vec(labels, indices.len(), device)?;
        Ok((x, y))
    }
}

/// The public-domain test photographs that ship in `data/photos/` (origin
/// and licence of each in `data/photos/README.md`), for denoising, filter
/// and super-resolution examples. Each is at most 256 pixels on a side, and
/// both sides are multiples of 8.
#[cfg(feature = "pictures")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Photo {
    /// Astronaut Eileen Collins (NASA), 256x256 RGB.
    Astronaut,
    /// DSCOVR's launch on a Falcon 9 at dusk (SpaceX), 256x168 RGB.
    Rocket,
    /// The Hubble eXtreme Deep Field (NASA), 256x224 RGB.
    HubbleDeepField,
    /// A photographer with a camera on a tripod (Lav Varshney, CC0), 256x256 gray.
    Camera,
}

#[cfg(feature = "pictures")]
impl Photo {
    pub const ALL: [Photo; 4] = [
        Photo::Astronaut,
        Photo::Rocket,
        Photo::HubbleDeepField,
        Photo::Camera,
    ];

    /// The file's stem: `astronaut`, `rocket`, `hubble_deep_field`, `camera`.
    pub fn name(self) -> &'static str {
        match self {
            Photo::Astronaut => "astronaut",
            Photo::Rocket => "rocket",
            Photo::HubbleDeepField => "hubble_deep_field",
            Photo::Camera => "camera",
        }
    }

    /// Where the PNG is, in this crate's source tree.
    pub fn path(self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/photos")
            .join(format!("{}.png", self.name()))
    }

    /// The photograph as a `[1, C, H, W]` f32 tensor in [0, 1]: `C` is 3
    /// for the colour ones, 1 for `Camera`.
    pub fn load(self, device: &Device) -> Result<Tensor, DataError> {
        Ok(crate::pictures::read_image(self.path(), device)?)
    }

    /// The photograph in gray, `[1, 1, H, W]` in [0, 1]: the luma of ITU-R
    /// BT.601 (0.299 R + 0.587 G + 0.114 B) for the colour ones.
    pub fn load_gray(self, device: &Device) -> Result<Tensor, DataError> {
        let x = self.load(device)?;
        if x.dim(1)? == 1 {
            return Ok(x);
        }
        let weights = Tensor::new(&[0.299f32, 0.587, 0.114], device)?.reshape((1, 3, 1, 1))?;
        Ok(x.broadcast_mul(&weights)?.sum_keepdim(1)?)
    }
}

/// Fisher-Yates with the runtime's seeded generator.
pub fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
