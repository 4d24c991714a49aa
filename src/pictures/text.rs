//! Text on an RGB image, in the bundled font, through `ab_glyph`: each
//! glyph's outline placed at the pen position plus its side bearing, with
//! kerning, anti-aliased, optionally turned a quarter turn to read upwards
//! (a y-axis label).

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use image::RgbImage;

use super::PictureError;

static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn font() -> Result<&'static FontRef<'static>, PictureError> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
        .ok_or(PictureError::Font)
}

/// Where the anchor point is on the text's box.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Align {
    Start,
    Center,
    End,
}

/// A piece of text to draw: `size` is the line height in pixels (ascent
/// plus descent), `at` the anchor point, `align` where the anchor sits
/// horizontally and vertically on the text's box (after turning).
#[derive(Clone, Debug)]
pub(crate) struct Label {
    pub text: String,
    pub size: f32,
    pub at: (i32, i32),
    pub align: (Align, Align),
    pub color: [u8; 3],
    pub upwards: bool,
}

/// Coverage in [0, 1] of a line of text, `width x height` row-major.
struct Mask {
    width: u32,
    height: u32,
    alpha: Vec<f32>,
}

fn rasterise(text: &str, size: f32) -> Result<Mask, PictureError> {
    let font = font()?;
    let scaled = font.as_scaled(PxScale::from(size));
    // One pixel of room on the left for glyphs that reach past the pen.
    let mut pen = 1.0f32;
    let mut prev = None;
    let mut glyphs = Vec::new();
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(scaled.scale(), point(pen, scaled.ascent())));
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    let (width, height) = (pen.ceil() as u32 + 2, scaled.height().ceil() as u32 + 1);
    let mut alpha = vec![0f32; (width * height) as usize];
    for glyph in glyphs {
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|x, y, c| {
                let (px, py) = (b.min.x as i64 + x as i64, b.min.y as i64 + y as i64);
                if (0..width as i64).contains(&px) && (0..height as i64).contains(&py) {
                    let a = &mut alpha[(py as u32 * width + px as u32) as usize];
                    *a = (*a + c).min(1.0);
                }
            });
        }
    }
    Ok(Mask {
        width,
        height,
        alpha,
    })
}

/// The width in pixels `text` takes at `size`.
pub(crate) fn width(text: &str, size: f32) -> Result<u32, PictureError> {
    Ok(rasterise(text, size)?.width)
}

/// Draws `label` on `img`, blending its colour by coverage; what falls
/// outside the image is dropped.
pub(crate) fn draw(img: &mut RgbImage, label: &Label) -> Result<(), PictureError> {
    let mask = rasterise(&label.text, label.size)?;
    let (w, h) = if label.upwards {
        (mask.height, mask.width)
    } else {
        (mask.width, mask.height)
    };
    let offset = |align: Align, extent: u32| match align {
        Align::Start => 0,
        Align::Center => extent as i32 / 2,
        Align::End => extent as i32,
    };
    let left = label.at.0 - offset(label.align.0, w);
    let top = label.at.1 - offset(label.align.1, h);
    for y in 0..h {
        for x in 0..w {
            // Turned upwards, the text's first letter is at the bottom.
            let (mx, my) = if label.upwards {
                (mask.width - 1 - y, x)
            } else {
                (x, y)
            };
            let a = mask.alpha[(my * mask.width + mx) as usize];
            let (px, py) = (left + x as i32, top + y as i32);
            if a == 0.0 || px < 0 || py < 0 || px >= img.width() as i32 || py >= img.height() as i32
            {
                continue;
            }
            let p = img.get_pixel_mut(px as u32, py as u32);
            for (c, &t) in p.0.iter_mut().zip(&label.color) {
                *c = (*c as f32 * (1.0 - a) + t as f32 * a).round() as u8;
            }
        }
    }
    Ok(())
}
