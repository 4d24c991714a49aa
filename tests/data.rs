//! The digits dataset: the shipped file loads, bad files are clear errors.

use std::path::PathBuf;

use netdsl::candle::Device;
use netdsl::data::{DataError, Digits};

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/digits.bin")
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netdsl-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn shipped_digits_load_and_split() {
    let d = Digits::load(shipped()).unwrap();
    assert_eq!((d.len(), d.height, d.width), (1797, 8, 8));
    for digit in 0..10u8 {
        let n = d.labels.iter().filter(|&&l| l == digit).count();
        assert!((170..=190).contains(&n), "digit {digit}: {n}");
    }
    let (train, test) = d.split(0.2, 7);
    assert_eq!((train.len(), test.len()), (1438, 359));
    assert!(
        test.iter().all(|i| !train.contains(i)),
        "held-out images must not be trained on"
    );
    assert_eq!(d.split(0.2, 7), (train.clone(), test.clone()), "seeded");
    assert_ne!(d.split(0.2, 8).1, test);
    let (x, y) = d.batch(&test[..5], 3, 28, &Device::Cpu).unwrap();
    assert_eq!((x.dims(), y.dims()), (&[5, 1, 28, 28][..], &[5][..]));
    let max: f32 = x.max_all().unwrap().to_scalar().unwrap();
    assert!(max <= 1.0 && max > 0.5);
}

#[test]
fn bad_files_are_clear_errors() {
    let bytes = std::fs::read(shipped()).unwrap();
    let truncated = scratch("truncated.bin", &bytes[..bytes.len() - 10]);
    let e = Digits::load(&truncated).unwrap_err();
    assert!(
        matches!(e, DataError::Format { .. }) && e.to_string().contains("truncated"),
        "{e}"
    );

    let mut bad_label = bytes.clone();
    bad_label[16 + 3 * 65 + 64] = 12; // image 3's label
    let e = Digits::load(scratch("label.bin", &bad_label)).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Label {
                index: 3,
                label: 12,
                ..
            }
        ),
        "{e}"
    );
    assert!(e
        .to_string()
        .contains("image 3 has label 12, but labels must be 0..=9"));

    let e = Digits::load(scratch("magic.bin", b"PNG\0 not digits at all")).unwrap_err();
    assert!(e.to_string().contains("`NDIG` header"), "{e}");
    let e = Digits::load(shipped().with_extension("missing")).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }));
}
