//! A sheet of images in a grid, each with a caption under it, and an
//! optional title: the input, the target and the output of an image model
//! side by side.

use std::path::Path;

use super::text::{self, Align, Label};
use super::{to_rgb, write_png, PictureError};
use crate::candle::Tensor;

const MARGIN: u32 = 10;
/// Between two columns, and between a row's captions and the next row.
const GAP: u32 = 10;
const TITLE_SIZE: f32 = 20.0;
const TITLE_BAND: u32 = 34;
const CAPTION_SIZE: f32 = 15.0;
const CAPTION_BAND: u32 = 22;
const TEXT_COLOR: [u8; 3] = [20, 20, 20];

/// A rectangle of a rendered sheet, in pixels from its top-left corner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Where one image and its caption landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellLayout {
    /// The image, after scaling.
    pub image: Rect,
    /// The band under the image its caption is centred in (the column's
    /// width; the same height for every caption of a row).
    pub caption: Rect,
}

/// Where everything landed on a rendered sheet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SheetLayout {
    pub width: u32,
    pub height: u32,
    /// The band the title is centred in, if there is a title.
    pub title: Option<Rect>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<CellLayout>>,
}

#[derive(Clone, Debug)]
struct Cell {
    pixels: image::RgbImage,
    caption: String,
}

/// Images in rows, each captioned, under an optional title, written as a
/// PNG. Images are `[C, H, W]` (or `[N, C, H, W]` for a whole row) with 1
/// (gray) or 3 (RGB) channels and values in [0, 1], clamped; every image is
/// enlarged `scale` times by pixel repetition. Images of different sizes
/// may share a sheet: a column is as wide as its widest image or caption,
/// and images are centred in it.
///
/// ```no_run
/// # use netdsl::candle::{Device, Tensor};
/// # use netdsl::pictures::ImageSheet;
/// # let (clean, noisy) = (Tensor::zeros((8, 1, 28, 28), netdsl::candle::DType::F32, &Device::Cpu)?, Tensor::zeros((8, 1, 28, 28), netdsl::candle::DType::F32, &Device::Cpu)?);
/// let mut sheet = ImageSheet::new().title("Held-out digits").scale(4);
/// sheet.row(&clean, (0..8).map(|i| format!("clean {i}")))?;
/// sheet.row(&noisy, (0..8).map(|i| format!("noisy {i}")))?;
/// let layout = sheet.save("target/restore/restore.png")?;
/// assert_eq!(layout.cells.len(), 2);
/// # Ok::<(), netdsl::pictures::PictureError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ImageSheet {
    title: Option<String>,
    scale: u32,
    rows: Vec<Vec<Cell>>,
}

impl Default for ImageSheet {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageSheet {
    /// An empty sheet, no title, images at their own size.
    pub fn new() -> Self {
        Self {
            title: None,
            scale: 1,
            rows: Vec::new(),
        }
    }

    /// A title centred above the grid.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Enlarges the images added after this call `scale` times (nearest
    /// neighbour, so pixels stay sharp); 1 unless set.
    pub fn scale(mut self, scale: u32) -> Self {
        self.scale = scale.max(1);
        self
    }

    /// Adds a row: the `N` images of `images` (`[N, C, H, W]`), each with
    /// its caption; there must be `N` captions.
    pub fn row<S: Into<String>>(
        &mut self,
        images: &Tensor,
        captions: impl IntoIterator<Item = S>,
    ) -> Result<&mut Self, PictureError> {
        let (n, ..) = images.dims4().map_err(|_| {
            PictureError::Input(format!(
                "a row of images is [N, C, H, W], got {:?}",
                images.dims()
            ))
        })?;
        let captions: Vec<String> = captions.into_iter().map(Into::into).collect();
        if captions.len() != n {
            return Err(PictureError::Input(format!(
                "a row of {n} images needs {n} captions, got {}",
                captions.len()
            )));
        }
        let mut cells = Vec::with_capacity(n);
        for (i, caption) in captions.into_iter().enumerate() {
            cells.push(self.cell(&images.get(i)?, caption)?);
        }
        self.rows.push(cells);
        Ok(self)
    }

    /// Adds one image (`[C, H, W]` or `[1, C, H, W]`) with its caption at
    /// the end of the last row (the first row if there is none).
    pub fn push(
        &mut self,
        image: &Tensor,
        caption: impl Into<String>,
    ) -> Result<&mut Self, PictureError> {
        let cell = self.cell(image, caption.into())?;
        match self.rows.last_mut() {
            Some(row) => row.push(cell),
            None => self.rows.push(vec![cell]),
        }
        Ok(self)
    }

    /// Starts a new row: the next [`push`](Self::push) goes under this one.
    pub fn next_row(&mut self) -> &mut Self {
        self.rows.push(Vec::new());
        self
    }

    fn cell(&self, image: &Tensor, caption: String) -> Result<Cell, PictureError> {
        let rgb = to_rgb(image)?;
        let (w, h) = (rgb.width() * self.scale, rgb.height() * self.scale);
        let pixels = image::imageops::resize(&rgb, w, h, image::imageops::FilterType::Nearest);
        Ok(Cell { pixels, caption })
    }

    /// Where every image, caption and the title go; `measure` gives the width of a text at a size.
    fn layout(
        &self,
        measure: impl Fn(&str, f32) -> Result<u32, PictureError>,
    ) -> Result<SheetLayout, PictureError> {
        let rows: Vec<&Vec<Cell>> = self.rows.iter().filter(|r| !r.is_empty()).collect();
        if rows.is_empty() {
            return Err(PictureError::Input("an image sheet with no images".into()));
        }
        let columns = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut col_w = vec![0u32; columns];
        for row in &rows {
            for (j, cell) in row.iter().enumerate() {
                let text = measure(&cell.caption, CAPTION_SIZE)?;
                col_w[j] = col_w[j].max(cell.pixels.width()).max(text + 6);
            }
        }
        let grid_w = col_w.iter().sum::<u32>() + GAP * (columns as u32 - 1);
        let title_w = match &self.title {
            Some(t) => measure(t, TITLE_SIZE)? + 8,
            None => 0,
        };
        let width = 2 * MARGIN + grid_w.max(title_w);
        // Centre the grid when the title is wider.
        let left = MARGIN + (grid_w.max(title_w) - grid_w) / 2;
        let title = self.title.as_ref().map(|_| Rect {
            x: MARGIN,
            y: MARGIN / 2,
            width: width - 2 * MARGIN,
            height: TITLE_BAND,
        });
        let mut y = title.map_or(MARGIN, |t| t.y + t.height);
        let mut cells = Vec::with_capacity(rows.len());
        for row in &rows {
            let row_h = row.iter().map(|c| c.pixels.height()).max().unwrap_or(0);
            let mut x = left;
            let mut laid = Vec::with_capacity(row.len());
            for (j, cell) in row.iter().enumerate() {
                let (w, h) = (cell.pixels.width(), cell.pixels.height());
                laid.push(CellLayout {
                    image: Rect {
                        x: x + (col_w[j] - w) / 2,
                        y,
                        width: w,
                        height: h,
                    },
                    caption: Rect {
                        x,
                        y: y + row_h,
                        width: col_w[j],
                        height: CAPTION_BAND,
                    },
                });
                x += col_w[j] + GAP;
            }
            cells.push(laid);
            y += row_h + CAPTION_BAND + GAP;
        }
        Ok(SheetLayout {
            width,
            height: y - GAP + MARGIN,
            title,
            cells,
        })
    }

    /// Draws the sheet; returns the picture and where everything is on it.
    pub fn render(&self) -> Result<(image::RgbImage, SheetLayout), PictureError> {
        let layout = self.layout(text::width)?;
        let mut img =
            image::RgbImage::from_pixel(layout.width, layout.height, image::Rgb([255; 3]));
        let centre = |r: &Rect| ((r.x + r.width / 2) as i32, (r.y + r.height / 2) as i32);
        let label = |text: &str, size: f32, at: &Rect| Label {
            text: text.to_string(),
            size,
            at: centre(at),
            align: (Align::Center, Align::Center),
            color: TEXT_COLOR,
            upwards: false,
        };
        if let (Some(title), Some(at)) = (&self.title, &layout.title) {
            text::draw(&mut img, &label(title, TITLE_SIZE, at))?;
        }
        let rows = self.rows.iter().filter(|r| !r.is_empty());
        for (row, laid) in rows.zip(&layout.cells) {
            for (cell, at) in row.iter().zip(laid) {
                image::imageops::replace(
                    &mut img,
                    &cell.pixels,
                    at.image.x as i64,
                    at.image.y as i64,
                );
                text::draw(&mut img, &label(&cell.caption, CAPTION_SIZE, &at.caption))?;
            }
        }
        Ok((img, layout))
    }

    /// Draws the sheet and writes it as a PNG at `path` (creating its
    /// folder); returns where everything is on it.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<SheetLayout, PictureError> {
        let (img, layout) = self.render()?;
        write_png(&img, path.as_ref())?;
        Ok(layout)
    }
}
