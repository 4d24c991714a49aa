//! Writing `[N, 1, H, W]` image tensors as a grayscale PNG grid.

use std::path::Path;

use netdsl::candle::{DType, Tensor};

/// Writes each tensor in `rows` (`[N, 1, H, W]`, values in [0, 1]; all of
/// one shape) as a row of its `N` images, one row under the other, every
/// pixel upscaled `scale` times (nearest neighbour) and the images parted by
/// grey lines. Values are clamped to [0, 1] and mapped to 0..=255.
pub fn write_grid(
    path: &Path,
    rows: &[&Tensor],
    scale: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let (n, c, h, w) = rows
        .first()
        .ok_or("write_grid: no rows to write")?
        .dims4()?;
    if c != 1 {
        return Err(format!("write_grid: {c} channels, expected 1").into());
    }
    let gap = scale.max(1);
    let (cell_h, cell_w) = (h * scale, w * scale);
    let width = n * cell_w + (n + 1) * gap;
    let height = rows.len() * cell_h + (rows.len() + 1) * gap;
    let mut img = image::GrayImage::from_pixel(width as u32, height as u32, image::Luma([128]));
    for (r, row) in rows.iter().enumerate() {
        if row.dims4()? != (n, c, h, w) {
            return Err(format!(
                "write_grid: row {r} is {:?}, row 0 is {:?}",
                row.dims(),
                [n, c, h, w]
            )
            .into());
        }
        let pixels = row.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        for i in 0..n {
            let (left, top) = (gap + i * (cell_w + gap), gap + r * (cell_h + gap));
            for y in 0..cell_h {
                for x in 0..cell_w {
                    let v = pixels[(i * h + y / scale) * w + x / scale];
                    let v = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    img.put_pixel((left + x) as u32, (top + y) as u32, image::Luma([v]));
                }
            }
        }
    }
    img.save(path)?;
    Ok(())
}
