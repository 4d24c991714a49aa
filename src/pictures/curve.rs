//! A training curve: one or two per-epoch series against the epoch, each
//! on its own y-axis, with a title, a legend, ticks and axis labels.

use std::ops::Range;
use std::path::Path;

use plotters::backend::BitMapBackend;
use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::text::{self, Align, Label};
use super::{draw_error, write_png, PictureError};

/// Loss (left axis) and a held-out metric (right axis).
const LEFT_COLOR: RGBColor = RGBColor(200, 40, 30);
const RIGHT_COLOR: RGBColor = RGBColor(30, 80, 200);
const TEXT_COLOR: RGBColor = RGBColor(20, 20, 20);
const TITLE_SIZE: f32 = 22.0;
const LEGEND_SIZE: f32 = 16.0;
const TICK_SIZE: f32 = 14.0;
const AXIS_SIZE: f32 = 16.0;
/// Most tick labels on a y-axis.
const Y_TICKS: usize = 8;

/// Heights of the bands above the chart, in pixels: the title, then the
/// legend. Tests look for text in them.
const TITLE_BAND: u32 = 40;
const LEGEND_BAND: u32 = 28;

#[derive(Clone, Debug)]
struct Series {
    label: String,
    values: Vec<f64>,
    range: Option<Range<f64>>,
}

impl Series {
    /// The y range: the one asked for, or the values' own with 5% to spare.
    fn y_range(&self) -> Range<f64> {
        if let Some(r) = &self.range {
            return r.clone();
        }
        let lo = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let pad = if hi > lo {
            0.05 * (hi - lo)
        } else {
            0.05 * hi.abs().max(1.0)
        };
        // A non-negative series (a loss) starts its axis at zero when that
        // costs less than its own spread, so the drop reads true.
        let bottom = if lo >= 0.0 && lo < hi - lo {
            0.0
        } else {
            lo - pad
        };
        bottom..hi + pad
    }

    fn points(&self) -> Vec<(f64, f64)> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, &v)| ((i + 1) as f64, v))
            .collect()
    }
}

/// A training curve as a PNG: the value at index `i` of a series is drawn
/// at epoch `i + 1`. The left series (a loss) is red on the left axis, the
/// optional right series (a held-out metric) blue on the right axis; the
/// title is on top, the legend under it, and each axis is labelled with its
/// series' name.
///
/// ```no_run
/// # use netdsl::pictures::TrainingCurve;
/// TrainingCurve::new("LeNet-5 on the digits")
///     .left("training loss (cross-entropy)", &[0.9, 0.3, 0.2])
///     .right("held-out accuracy (%)", &[91.0, 96.5, 97.8])
///     .save("target/lenet/lenet_curve.png")?;
/// # Ok::<(), netdsl::pictures::PictureError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TrainingCurve {
    title: String,
    x_label: String,
    left: Option<Series>,
    right: Option<Series>,
    size: (u32, u32),
}

impl TrainingCurve {
    /// An empty curve titled `title`, 800x480 pixels, x-axis "epoch".
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            x_label: "epoch".into(),
            left: None,
            right: None,
            size: (800, 480),
        }
    }

    /// The series on the left axis (usually the training loss), one value
    /// per epoch.
    pub fn left(mut self, label: impl Into<String>, values: &[f64]) -> Self {
        self.left = Some(Series {
            label: label.into(),
            values: values.to_vec(),
            range: None,
        });
        self
    }

    /// The series on the right axis (usually a held-out metric), one value
    /// per epoch.
    pub fn right(mut self, label: impl Into<String>, values: &[f64]) -> Self {
        self.right = Some(Series {
            label: label.into(),
            values: values.to_vec(),
            range: None,
        });
        self
    }

    /// Fixes the left axis to `range` instead of fitting it to the values.
    pub fn left_range(mut self, range: Range<f64>) -> Self {
        if let Some(s) = &mut self.left {
            s.range = Some(range);
        }
        self
    }

    /// Fixes the right axis to `range` (say `0.0..100.0` for a percentage).
    pub fn right_range(mut self, range: Range<f64>) -> Self {
        if let Some(s) = &mut self.right {
            s.range = Some(range);
        }
        self
    }

    /// The x-axis label, "epoch" unless set.
    pub fn x_label(mut self, label: impl Into<String>) -> Self {
        self.x_label = label.into();
        self
    }

    /// The picture's size in pixels, 800x480 unless set.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = (width, height);
        self
    }

    /// Draws the curve.
    pub fn render(&self) -> Result<image::RgbImage, PictureError> {
        let left = self
            .left
            .as_ref()
            .ok_or_else(|| PictureError::Input("a training curve needs a left series".into()))?;
        for s in [Some(left), self.right.as_ref()].into_iter().flatten() {
            if s.values.is_empty() || s.values.iter().any(|v| !v.is_finite()) {
                return Err(PictureError::Input(format!(
                    "series `{}` has no values, or one that is not finite: {:?}",
                    s.label, s.values
                )));
            }
            let r = s.y_range();
            if r.start.partial_cmp(&r.end) != Some(std::cmp::Ordering::Less) {
                return Err(PictureError::Input(format!(
                    "series `{}`: empty y range {r:?}",
                    s.label
                )));
            }
        }
        let (w, h) = self.size;
        if w < 320 || h < 240 {
            return Err(PictureError::Input(format!(
                "a training curve needs at least 320x240 pixels, got {w}x{h}"
            )));
        }
        let mut buf = vec![255u8; (w * h * 3) as usize];
        let labels = {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            let labels = self.draw(&root, left).map_err(draw_error)?;
            root.present().map_err(draw_error)?;
            labels
        };
        let mut img = image::RgbImage::from_raw(w, h, buf)
            .ok_or_else(|| PictureError::Draw("bitmap of the wrong size".into()))?;
        for label in &labels {
            text::draw(&mut img, label)?;
        }
        Ok(img)
    }

    /// Draws the curve and writes it as a PNG at `path` (creating its folder).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PictureError> {
        write_png(&self.render()?, path.as_ref())
    }

    /// Draws the grid, axes, tick marks, curves and legend samples with
    /// plotters; returns the text to put on them.
    fn draw(
        &self,
        root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
        left: &Series,
    ) -> Result<Vec<Label>, Box<dyn std::error::Error>> {
        let (w, _) = root.dim_in_pixel();
        let mut labels = vec![label(
            &self.title,
            TITLE_SIZE,
            (w as i32 / 2, TITLE_BAND as i32 / 2 + 2),
            (Align::Center, Align::Center),
        )];
        let (_, body) = root.split_vertically(TITLE_BAND + LEGEND_BAND);
        self.draw_legend(root, left, &mut labels)?;

        let epochs = left
            .values
            .len()
            .max(self.right.as_ref().map_or(0, |r| r.values.len()));
        let x_range = 1.0..(epochs.max(2) as f64);
        let has_right = self.right.is_some();
        let right_range = self.right.as_ref().map_or(0.0..1.0, |r| r.y_range());
        let mut chart = ChartBuilder::on(&body)
            .margin_left(12)
            .margin_right(if has_right { 12 } else { 24 })
            .margin_top(6)
            .margin_bottom(8)
            .x_label_area_size(52)
            .y_label_area_size(76)
            .right_y_label_area_size(if has_right { 76 } else { 0 })
            .build_cartesian_2d(x_range.clone(), left.y_range())?
            .set_secondary_coord(x_range.clone(), right_range.clone());
        // Whole epochs only: as many ticks as fit, at integer steps. The tick
        // values are plotters' own (1, 2 or 5 times a power of ten).
        let x_ticks: Vec<f64> = RangedCoordf64::from(x_range.clone())
            .key_points(epochs.clamp(2, 11))
            .into_iter()
            .filter(|x| x.fract() == 0.0)
            .collect();
        let left_ticks = RangedCoordf64::from(left.y_range()).key_points(Y_TICKS);
        let right_ticks = RangedCoordf64::from(right_range).key_points(Y_TICKS);
        let (px, py) = chart.plotting_area().get_pixel_range();
        let (x0, x1, y0, y1) = (px.start, px.end - 1, py.start, py.end - 1);
        let line = |a: (i32, i32), b: (i32, i32), color: RGBColor| {
            root.draw(&PathElement::new(vec![a, b], color.stroke_width(1)))
        };

        // The grid first, under the curves.
        let grid = RGBColor(222, 222, 222);
        for &x in &x_ticks {
            let (cx, _) = chart.backend_coord(&(x, 0.0));
            line((cx, y0), (cx, y1), grid)?;
        }
        for &y in &left_ticks {
            let (_, cy) = chart.backend_coord(&(x_range.start, y));
            line((x0, cy), (x1, cy), grid)?;
        }
        chart.draw_series(LineSeries::new(left.points(), LEFT_COLOR.stroke_width(2)))?;
        chart.draw_series(
            left.points()
                .into_iter()
                .map(|p| Circle::new(p, 3, LEFT_COLOR.filled())),
        )?;
        if let Some(right) = &self.right {
            chart.draw_secondary_series(LineSeries::new(
                right.points(),
                RIGHT_COLOR.stroke_width(2),
            ))?;
            chart.draw_secondary_series(
                right
                    .points()
                    .into_iter()
                    .map(|p| Circle::new(p, 3, RIGHT_COLOR.filled())),
            )?;
        }

        // Axes, tick marks and tick labels.
        line((x0, y1), (x1, y1), TEXT_COLOR)?;
        line((x0, y0), (x0, y1), TEXT_COLOR)?;
        if has_right {
            line((x1, y0), (x1, y1), TEXT_COLOR)?;
        }
        for &x in &x_ticks {
            let (cx, _) = chart.backend_coord(&(x, 0.0));
            line((cx, y1), (cx, y1 + 5), TEXT_COLOR)?;
            labels.push(label(
                &format!("{x:.0}"),
                TICK_SIZE,
                (cx, y1 + 8),
                (Align::Center, Align::Start),
            ));
        }
        let digits = decimals(&left_ticks);
        for &y in &left_ticks {
            let (_, cy) = chart.backend_coord(&(x_range.start, y));
            line((x0 - 5, cy), (x0, cy), TEXT_COLOR)?;
            labels.push(label(
                &format!("{y:.digits$}"),
                TICK_SIZE,
                (x0 - 8, cy),
                (Align::End, Align::Center),
            ));
        }
        if has_right {
            let digits = decimals(&right_ticks);
            for &y in &right_ticks {
                let (_, cy) = chart.borrow_secondary().backend_coord(&(x_range.end, y));
                line((x1, cy), (x1 + 5, cy), TEXT_COLOR)?;
                labels.push(label(
                    &format!("{y:.digits$}"),
                    TICK_SIZE,
                    (x1 + 8, cy),
                    (Align::Start, Align::Center),
                ));
            }
        }
        let (cx, _) = chart.backend_coord(&((x_range.start + x_range.end) / 2.0, 0.0));
        let cy = (py.start + py.end) / 2;
        labels.push(label(
            &self.x_label,
            AXIS_SIZE,
            (cx, y1 + 30),
            (Align::Center, Align::Start),
        ));
        labels.push(Label {
            upwards: true,
            ..label(
                &left.label,
                AXIS_SIZE,
                (x0 - 46, cy),
                (Align::End, Align::Center),
            )
        });
        if let Some(right) = &self.right {
            labels.push(Label {
                upwards: true,
                ..label(
                    &right.label,
                    AXIS_SIZE,
                    (x1 + 46, cy),
                    (Align::Start, Align::Center),
                )
            });
        }
        Ok(labels)
    }

    /// One entry per series in the band under the title, centred: a short
    /// line in its colour, then its label.
    fn draw_legend(
        &self,
        root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
        left: &Series,
        labels: &mut Vec<Label>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let entries: Vec<(&Series, RGBColor)> = [Some((left, LEFT_COLOR))]
            .into_iter()
            .chain([self.right.as_ref().map(|r| (r, RIGHT_COLOR))])
            .flatten()
            .collect();
        let (line, gap, spacing) = (28i32, 8i32, 32i32);
        let widths: Vec<i32> = entries
            .iter()
            .map(|(s, _)| text::width(&s.label, LEGEND_SIZE).map(|w| w as i32))
            .collect::<Result<_, _>>()?;
        let total: i32 = widths.iter().map(|w| line + gap + w).sum::<i32>()
            + spacing * (entries.len() as i32 - 1);
        let (w, _) = root.dim_in_pixel();
        let mut x = (w as i32 - total) / 2;
        let y = (TITLE_BAND + LEGEND_BAND / 2) as i32;
        for ((series, color), width) in entries.iter().zip(widths) {
            root.draw(&PathElement::new(
                vec![(x, y), (x + line, y)],
                color.stroke_width(3),
            ))?;
            root.draw(&Circle::new((x + line / 2, y), 3, color.filled()))?;
            labels.push(label(
                &series.label,
                LEGEND_SIZE,
                (x + line + gap, y),
                (Align::Start, Align::Center),
            ));
            x += line + gap + width + spacing;
        }
        Ok(())
    }
}

fn label(text: &str, size: f32, at: (i32, i32), align: (Align, Align)) -> Label {
    Label {
        text: text.to_string(),
        size,
        at,
        align,
        color: [TEXT_COLOR.0, TEXT_COLOR.1, TEXT_COLOR.2],
        upwards: false,
    }
}

/// The fewest decimals that write every tick exactly (0.2, 0.4 need one;
/// 0.25 two; 90, 95 none).
fn decimals(ticks: &[f64]) -> usize {
    (0..6)
        .find(|&d| {
            let f = 10f64.powi(d as i32);
            ticks
                .iter()
                .all(|t| ((t * f).round() / f - t).abs() <= 1e-9 * t.abs().max(1.0))
        })
        .unwrap_or(6)
}
