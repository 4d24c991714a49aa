//! The pictures netdsl writes: each is saved as a PNG, decoded again, and
//! checked for its size and for text pixels where its title, legend, axis
//! labels or captions are (and for none where there is no text).

use std::path::PathBuf;

use image::RgbImage;
use netdsl::candle::{DType, Device, Tensor};
use netdsl::data::Photo;
use netdsl::pictures::{read_image, ImageSheet, PictureError, Rect, TrainingCurve};

mod common;

fn out(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("pictures")
        .join(name)
}

fn decode(path: &PathBuf) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
        .into_rgb8()
}

/// Pixels of `img` in `r` that `is` picks.
fn count(img: &RgbImage, r: Rect, is: impl Fn([u8; 3]) -> bool) -> usize {
    let mut n = 0;
    for y in r.y..(r.y + r.height).min(img.height()) {
        for x in r.x..(r.x + r.width).min(img.width()) {
            n += is(img.get_pixel(x, y).0) as usize;
        }
    }
    n
}

/// Dark gray to black: the text colour, anti-aliased.
fn ink(p: [u8; 3]) -> bool {
    p.iter().all(|&c| c < 110)
}
fn red(p: [u8; 3]) -> bool {
    p[0] > 150 && p[1] < 90 && p[2] < 90
}
fn blue(p: [u8; 3]) -> bool {
    p[2] > 150 && p[0] < 90 && p[1] < 130
}

/// The smallest rectangle holding every ink pixel of `r`, if any.
fn ink_box(img: &RgbImage, r: Rect) -> Option<Rect> {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for y in r.y..r.y + r.height {
        for x in r.x..r.x + r.width {
            if ink(img.get_pixel(x, y).0) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    if x0 == u32::MAX {
        return None;
    }
    Some(Rect {
        x: x0,
        y: y0,
        width: x1 - x0 + 1,
        height: y1 - y0 + 1,
    })
}

fn rect(x: u32, y: u32, width: u32, height: u32) -> Rect {
    Rect {
        x,
        y,
        width,
        height,
    }
}

const LOSS: [f64; 15] = [
    1.21, 0.42, 0.25, 0.18, 0.14, 0.11, 0.09, 0.075, 0.062, 0.05, 0.043, 0.037, 0.033, 0.031, 0.03,
];
const ACCURACY: [f64; 15] = [
    88.1, 93.6, 95.3, 96.1, 96.9, 97.2, 97.5, 97.8, 97.8, 98.1, 98.1, 98.3, 98.3, 98.3, 98.3,
];

#[test]
fn training_curve_has_title_legend_ticks_and_axis_labels() {
    let path = out("curve.png");
    TrainingCurve::new("LeNet-5 on 1438 handwritten digits (seed 0)")
        .left("training loss (cross-entropy)", &LOSS)
        .right("held-out accuracy (%)", &ACCURACY)
        .save(&path)
        .unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (800, 480));

    // The title: ink in the top band, centred.
    let title = ink_box(&img, rect(0, 0, 800, 40)).expect("no title");
    let centre = title.x + title.width / 2;
    assert!(
        (390..=410).contains(&centre) && title.width > 250 && title.height >= 10,
        "title ink at {title:?}"
    );
    // The legend under it: a red and a blue sample line, and text.
    let legend = rect(0, 40, 800, 28);
    assert!(count(&img, legend, red) > 40, "no red legend line");
    assert!(count(&img, legend, blue) > 40, "no blue legend line");
    assert!(count(&img, legend, ink) > 150, "no legend text");
    // The x-axis label at the bottom, centred under the chart.
    let x_desc = ink_box(&img, rect(200, 455, 400, 25)).expect("no x-axis label");
    assert!(x_desc.width > 25, "x-axis label ink at {x_desc:?}");
    // The y-axis labels, written upwards along both edges, clear of the
    // tick labels.
    for (side, strip) in [
        ("left", rect(0, 100, 50, 300)),
        ("right", rect(750, 100, 50, 300)),
    ] {
        let label = ink_box(&img, strip).unwrap_or_else(|| panic!("no {side} axis label"));
        assert!(label.height > 100, "{side} axis label ink at {label:?}");
    }
    // The curves themselves, in the chart.
    let chart = rect(90, 70, 620, 360);
    assert!(count(&img, chart, red) > 500, "no loss curve");
    assert!(count(&img, chart, blue) > 500, "no accuracy curve");
}

#[test]
fn training_curve_without_a_right_series_has_no_right_axis() {
    let path = out("curve_left_only.png");
    TrainingCurve::new("")
        .left("training MSE", &LOSS[..4])
        .size(640, 360)
        .save(&path)
        .unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (640, 360));
    assert_eq!(
        ink_box(&img, rect(0, 0, 640, 40)),
        None,
        "an empty title drew ink"
    );
    assert_eq!(count(&img, rect(0, 40, 640, 28), blue), 0);
    assert!(count(&img, rect(0, 40, 640, 28), red) > 40);
    assert_eq!(
        ink_box(&img, rect(610, 70, 30, 220)),
        None,
        "a right axis without a right series"
    );
    assert!(
        ink_box(&img, rect(0, 100, 50, 200)).is_some(),
        "no left axis label"
    );
}

#[test]
fn training_curve_refuses_what_it_cannot_draw() {
    let err = |c: TrainingCurve| match c.render() {
        Err(PictureError::Input(m)) => m,
        other => panic!("expected an input error, got {other:?}"),
    };
    assert!(err(TrainingCurve::new("t")).contains("needs a left series"));
    assert!(err(TrainingCurve::new("t").left("loss", &[])).contains("`loss` has no values"));
    assert!(err(TrainingCurve::new("t").left("loss", &[1.0, f64::NAN])).contains("not finite"));
    assert!(err(TrainingCurve::new("t").left("loss", &[1.0]).size(100, 100)).contains("320x240"));
}

/// `n` gray `size`x`size` squares, the i-th at value `(i + 1) / (n + 1)`.
fn squares(n: usize, size: usize) -> Tensor {
    let v: Vec<f32> = (0..n)
        .flat_map(|i| std::iter::repeat_n((i + 1) as f32 / (n + 1) as f32, size * size))
        .collect();
    Tensor::from_vec(v, (n, 1, size, size), &Device::Cpu).unwrap()
}

#[test]
fn image_sheet_captions_each_image_under_it() {
    let path = out("sheet.png");
    let mut sheet = ImageSheet::new()
        .title("Held-out digits: clean, noisy, restored")
        .scale(4);
    let captions = [
        ["clean", "clean", ""],
        ["noisy 10.3 dB", "noisy 9.8 dB", "noisy 11.0 dB"],
        ["restored 20.8 dB", "restored 21.5 dB", "restored 19.9 dB"],
    ];
    for row in &captions {
        sheet.row(&squares(3, 28), row.iter().copied()).unwrap();
    }
    let layout = sheet.save(&path).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (layout.width, layout.height));
    assert_eq!(layout.cells.len(), 3);

    let title = layout.title.expect("a titled sheet has a title band");
    let ink_title = ink_box(&img, title).expect("no title text");
    assert!(ink_title.width > 200, "title ink at {ink_title:?}");

    for (r, row) in layout.cells.iter().enumerate() {
        assert_eq!(row.len(), 3);
        for (c, cell) in row.iter().enumerate() {
            // The image, x4, where the layout says, with its own gray.
            assert_eq!((cell.image.width, cell.image.height), (112, 112));
            let want = ((c + 1) as f32 / 4.0 * 255.0).round() as u8;
            let p = img.get_pixel(cell.image.x + 56, cell.image.y + 56).0;
            assert_eq!(p, [want; 3], "row {r} image {c}");
            // Its caption right under it, centred on it, and nowhere else.
            assert_eq!(cell.caption.y, cell.image.y + cell.image.height);
            let text = captions[r][c];
            match ink_box(&img, cell.caption) {
                None => assert!(text.is_empty(), "no ink for caption {text:?} at {cell:?}"),
                Some(b) => {
                    assert!(!text.is_empty(), "ink under an uncaptioned image: {b:?}");
                    let (mid, image_mid) = (b.x + b.width / 2, cell.image.x + cell.image.width / 2);
                    assert!(
                        mid.abs_diff(image_mid) <= 3,
                        "caption {text:?} at {b:?}, image at {:?}",
                        cell.image
                    );
                    assert!(b.height >= 8, "caption {text:?} ink at {b:?}");
                    // Longer captions are wider.
                    assert!(
                        b.width as usize >= 5 * text.len(),
                        "caption {text:?} ink at {b:?}"
                    );
                }
            }
        }
    }
    // Nothing but background between the rows' captions and the next images.
    let below = layout.cells[0][0].caption;
    let gap = rect(
        0,
        below.y + below.height,
        layout.width,
        layout.cells[1][0].image.y - below.y - below.height,
    );
    assert_eq!(
        count(&img, gap, |p| p != [255; 3]),
        0,
        "ink in the gap {gap:?}"
    );
}

#[test]
fn image_sheet_mixes_sizes_and_channels() {
    let gray = squares(1, 16).get(0).unwrap(); // [1, 16, 16]
    let rgb = Tensor::cat(
        &[
            Tensor::ones((1, 1, 8, 12), DType::F32, &Device::Cpu).unwrap(),
            Tensor::zeros((1, 2, 8, 12), DType::F32, &Device::Cpu).unwrap(),
        ],
        1,
    )
    .unwrap(); // [1, 3, 8, 12], red
    let mut sheet = ImageSheet::new().scale(2);
    sheet.push(&gray, "gray 16x16").unwrap();
    sheet.push(&rgb, "red").unwrap();
    sheet.next_row();
    sheet
        .push(&rgb, "a much longer caption than the image")
        .unwrap();
    let path = out("sheet_mixed.png");
    let layout = sheet.save(&path).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (layout.width, layout.height));
    assert_eq!(layout.title, None);
    let red_cell = layout.cells[0][1].image;
    assert_eq!((red_cell.width, red_cell.height), (24, 16));
    assert_eq!(img.get_pixel(red_cell.x + 3, red_cell.y + 3).0, [255, 0, 0]);
    // The long caption widens its column; the image is centred in it.
    let long = layout.cells[1][0];
    let b = ink_box(&img, long.caption).expect("no long caption");
    assert!(b.width > 150, "long caption ink at {b:?}");
    assert!(long.caption.width > b.width);
    assert_eq!(long.image.x, long.caption.x + (long.caption.width - 24) / 2);
}

#[test]
fn image_sheet_refuses_bad_input() {
    let mut sheet = ImageSheet::new();
    let msg = |r: Result<&mut ImageSheet, PictureError>| r.unwrap_err().to_string();
    assert!(msg(sheet.row(&squares(2, 4), ["one"])).contains("2 images needs 2 captions"));
    let two_channels = Tensor::zeros((2, 4, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(msg(sheet.push(&two_channels, "x")).contains("1 (gray) or 3 (RGB) channels, got 2"));
    assert!(msg(sheet.row(&two_channels, ["a", "b"])).contains("[N, C, H, W]"));
    assert!(ImageSheet::new()
        .render()
        .unwrap_err()
        .to_string()
        .contains("no images"));
}

#[test]
fn bundled_photos_load_at_their_documented_sizes() {
    let sizes = [(3, 256, 256), (3, 168, 256), (3, 224, 256), (1, 256, 256)];
    for (photo, (c, h, w)) in Photo::ALL.into_iter().zip(sizes) {
        let x = photo.load(&Device::Cpu).unwrap();
        assert_eq!(x.dims4().unwrap(), (1, c, h, w), "{photo:?}");
        let v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let (lo, hi) = v
            .iter()
            .fold((1f32, 0f32), |(l, h), &p| (l.min(p), h.max(p)));
        assert!(
            lo >= 0.0 && hi <= 1.0 && hi - lo > 0.5,
            "{photo:?}: values {lo}..{hi}"
        );
        let g = photo.load_gray(&Device::Cpu).unwrap();
        assert_eq!(g.dims4().unwrap(), (1, 1, h, w), "{photo:?} in gray");
        assert!(photo
            .path()
            .ends_with(format!("data/photos/{}.png", photo.name())));
    }
    // BT.601 luma of one astronaut pixel, by hand.
    let x = Photo::Astronaut.load(&Device::Cpu).unwrap();
    let p: Vec<f32> = x
        .get(0)
        .unwrap()
        .narrow(1, 100, 1)
        .unwrap()
        .narrow(2, 100, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let g: f32 = Photo::Astronaut
        .load_gray(&Device::Cpu)
        .unwrap()
        .get(0)
        .unwrap()
        .get(0)
        .unwrap()
        .get(100)
        .unwrap()
        .get(100)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((g - (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])).abs() < 1e-6);
}

#[test]
fn a_sheet_of_photos_round_trips_through_read_image() {
    let astronaut = Photo::Astronaut.load(&Device::Cpu).unwrap();
    let mut sheet = ImageSheet::new();
    sheet.push(&astronaut, "astronaut").unwrap();
    let path = out("photo_sheet.png");
    let layout = sheet.save(&path).unwrap();
    let back = read_image(&path, &Device::Cpu).unwrap();
    let cell = layout.cells[0][0].image;
    let crop = back
        .narrow(2, cell.y as usize, 256)
        .unwrap()
        .narrow(3, cell.x as usize, 256)
        .unwrap();
    // Pixels lie in [0, 1], so the shared relative error is the largest
    // absolute difference.
    let diff = common::rel_err(&crop, &astronaut);
    assert!(diff < 0.5 / 255.0, "the photo changed on the sheet: {diff}");
}
