//! Weight files written byte by byte: every way a safetensors file can be
//! malformed is refused whole with an error naming the tensor; strict and
//! non-strict loading, remapping, half precision on disk, atomic saves.

use std::path::PathBuf;

use netdsl_runtime::candle::{DType, Device, Tensor};
use netdsl_runtime::{
    take, Error, FileProblem, Initializer, LoadOptions, LoadedWeights, ParamSource, ParamSpec,
    SaveOptions, WeightProblem,
};

const MANIFEST: &[ParamSpec] = &[
    ParamSpec::weight("w", &[2, 2], 2),
    ParamSpec::bias("b", &[2], 2),
];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netdsl-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A safetensors file: the header's length (u64, little-endian), the header,
/// the data.
fn bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn write(name: &str, header: &str, data: &[u8]) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, bytes(header, data)).unwrap();
    path
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `w` = [[1, 2], [3, 4]] at [0, 16), `b` = [5, 6] at [16, 24).
const GOOD: &str = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#;

fn good_data() -> Vec<u8> {
    f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
}

fn load(path: &PathBuf, opts: &LoadOptions) -> netdsl_runtime::Result<LoadedWeights> {
    opts.load("Net", path, MANIFEST, &Device::Cpu)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn take_all(w: &mut LoadedWeights) -> Vec<Vec<f32>> {
    MANIFEST
        .iter()
        .map(|spec| values(&take(w, "Net", spec).unwrap()))
        .collect()
}

/// The file is refused by `load` and by the header check alone, with this
/// problem.
fn refused(name: &str, header: &str, data: &[u8]) -> FileProblem {
    let path = write(name, header, data);
    let check = LoadOptions::new().check("Net", &path, MANIFEST);
    let Err(Error::Malformed {
        problem: checked, ..
    }) = check
    else {
        panic!("{name}: the header check gave {check:?}");
    };
    match load(&path, &LoadOptions::new().strict(false)) {
        Err(Error::Malformed { path: p, problem }) => {
            assert_eq!(p, path);
            assert_eq!(problem, checked);
            problem
        }
        other => panic!("{name}: expected a malformed-file error, got {other:?}"),
    }
}

#[test]
fn a_good_file_loads_exactly() {
    let path = write("good.safetensors", GOOD, &good_data());
    let mut w = load(&path, &LoadOptions::new()).unwrap();
    assert!(w.report().is_complete());
    assert_eq!(w.report().loaded, ["w", "b"]);
    assert_eq!(take_all(&mut w), [vec![1.0, 2.0, 3.0, 4.0], vec![5.0, 6.0]]);
}

#[test]
fn truncated_file() {
    let data = good_data();
    let p = refused("truncated.safetensors", GOOD, &data[..20]);
    assert_eq!(
        p,
        FileProblem::Truncated {
            tensor: "b".into(),
            end: 24,
            data_len: 20
        }
    );
    assert_eq!(p.tensor(), Some("b"));
    assert_eq!(
        p.to_string(),
        "the file is truncated: tensor `b` needs bytes up to 24 of the tensor data, but only 20 are there"
    );
}

#[test]
fn header_longer_than_the_file() {
    let mut file = bytes(GOOD, &good_data());
    file[..8].copy_from_slice(&1000u64.to_le_bytes());
    let path = scratch("long-header.safetensors");
    std::fs::write(&path, &file).unwrap();
    match load(&path, &LoadOptions::new()) {
        Err(Error::Malformed {
            problem:
                FileProblem::HeaderPastEnd {
                    header_len: 1000,
                    available,
                },
            ..
        }) => assert_eq!(available, file.len() as u64 - 8),
        other => panic!("{other:?}"),
    }
    // A length near u64::MAX must not make the loader allocate it.
    file[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &file).unwrap();
    assert!(matches!(
        load(&path, &LoadOptions::new()),
        Err(Error::Malformed {
            problem: FileProblem::HeaderPastEnd { .. },
            ..
        })
    ));
}

#[test]
fn overlapping_offsets() {
    let header = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#;
    assert_eq!(
        refused("overlap.safetensors", header, &good_data()),
        FileProblem::Overlap {
            tensor: "w".into(),
            start: 0,
            end: 16,
            other: "b".into(),
            other_start: 12,
            other_end: 20
        }
    );
}

#[test]
fn out_of_range_offsets() {
    // Past the end while `w` ends at 16: not a cut-off file but a bad offset.
    let past = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[100,108]}}"#;
    assert_eq!(
        refused("past-end.safetensors", past, &good_data()),
        FileProblem::OffsetOutOfRange {
            tensor: "b".into(),
            start: 100,
            end: 108,
            data_len: 24
        }
    );
    let reversed = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[24,16]}}"#;
    assert_eq!(
        refused("reversed.safetensors", reversed, &good_data()),
        FileProblem::OffsetOutOfRange {
            tensor: "b".into(),
            start: 24,
            end: 16,
            data_len: 24
        }
    );
}

#[test]
fn unknown_dtype() {
    let header = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F17","shape":[2],"data_offsets":[16,24]}}"#;
    let p = refused("dtype.safetensors", header, &good_data());
    assert_eq!(
        p,
        FileProblem::UnknownDType {
            tensor: "b".into(),
            dtype: "F17".into()
        }
    );
    assert_eq!(p.to_string(), "tensor `b` has the unknown dtype `F17`");
}

#[test]
fn byte_length_disagrees_with_shape() {
    // [2] of F32 needs 8 bytes; the offsets give 4.
    let header = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,20]}}"#;
    assert_eq!(
        refused("length.safetensors", header, &good_data()),
        FileProblem::ByteLength {
            tensor: "b".into(),
            dtype: "F32".into(),
            shape: vec![2],
            expected: 8,
            found: 4
        }
    );
    // A shape whose size overflows u64 is a byte-length problem too, not a panic.
    let huge =
        r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}"#;
    assert!(matches!(
        refused("huge.safetensors", huge, &good_data()),
        FileProblem::ByteLength { tensor, .. } if tensor == "w"
    ));
}

#[test]
fn headers_that_are_not_safetensors() {
    let path = scratch("short.safetensors");
    std::fs::write(&path, [1u8, 2, 3, 4, 5]).unwrap();
    assert!(matches!(
        load(&path, &LoadOptions::new()),
        Err(Error::Malformed {
            problem: FileProblem::TooShort { len: 5 },
            ..
        })
    ));
    assert!(matches!(
        refused("json.safetensors", "not json at all!", &[]),
        FileProblem::Header { .. }
    ));
    let entry = r#"{"w":{"dtype":"F32","data_offsets":[0,16]}}"#;
    match refused("entry.safetensors", entry, &good_data()) {
        FileProblem::Entry { tensor, message } => {
            assert_eq!(tensor, "w");
            assert!(message.contains("shape"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_finite_weights_are_refused_on_request() {
    let mut data = good_data();
    data[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
    let path = write("nan.safetensors", GOOD, &data);
    // Without the check the file loads (PyTorch does the same).
    let mut w = load(&path, &LoadOptions::new()).unwrap();
    assert!(take(&mut w, "Net", &MANIFEST[1])
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[1]
        .is_nan());
    match load(&path, &LoadOptions::new().check_finite(true)) {
        Err(Error::Malformed {
            problem:
                FileProblem::NonFinite {
                    tensor,
                    index,
                    value,
                },
            ..
        }) => {
            assert_eq!((tensor.as_str(), index), ("b", 1));
            assert!(value.is_nan());
        }
        other => panic!("{other:?}"),
    }
    // An f16 infinity (0x7c00) in `w[2]`, and an f64 too large for the
    // network's f32, which becomes infinite on conversion.
    let header = r#"{"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"F64","shape":[2],"data_offsets":[8,24]}}"#;
    let mut data: Vec<u8> = [0x3c00u16, 0x3c00, 0x7c00, 0x3c00]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    data.extend([1.0f64, 1e300].iter().flat_map(|x| x.to_le_bytes()));
    let path = write("inf.safetensors", header, &data);
    let err = load(&path, &LoadOptions::new().check_finite(true)).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("cannot be loaded: tensor `w` holds inf at flat index 2"),
        "{err}"
    );
    let only_b = r#"{"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"F64","shape":[2],"data_offsets":[8,24]}}"#;
    data[4..6].copy_from_slice(&0x3c00u16.to_le_bytes());
    let path = write("overflow.safetensors", only_b, &data);
    assert!(matches!(
        load(&path, &LoadOptions::new().check_finite(true)),
        Err(Error::Malformed { problem: FileProblem::NonFinite { tensor, index: 1, value }, .. })
            if tensor == "b" && value == f64::INFINITY
    ));
}

#[test]
fn half_precision_files_convert_to_the_network_dtype() {
    // f16: 1.0 = 0x3c00, -2.0 = 0xc000, 0.5 = 0x3800, 65504 (the largest) = 0x7bff.
    // bf16: 1.0 = 0x3f80, -2.5 = 0xc020; 0x4049 = 2^1 * (1 + 73/128) = 3.140625.
    let header = r#"{"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},"n":{"dtype":"I64","shape":[],"data_offsets":[12,20]}}"#;
    let mut data: Vec<u8> = [0x3c00u16, 0xc000, 0x3800, 0x7bff, 0xc020, 0x4049]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    data.extend(7i64.to_le_bytes());
    let path = write("half.safetensors", header, &data);
    let manifest = [MANIFEST[0], MANIFEST[1], ParamSpec::counter("n")];
    let mut w = LoadOptions::new()
        .load("Net", &path, &manifest, &Device::Cpu)
        .unwrap();
    let wt = take(&mut w, "Net", &manifest[0]).unwrap();
    assert_eq!(wt.dtype(), DType::F32);
    assert_eq!(values(&wt), [1.0, -2.0, 0.5, 65504.0]);
    assert_eq!(
        values(&take(&mut w, "Net", &manifest[1]).unwrap()),
        [-2.5, 3.140625]
    );
    let n = take(&mut w, "Net", &manifest[2]).unwrap();
    assert_eq!((n.dtype(), n.to_scalar::<i64>().unwrap()), (DType::I64, 7));
}

#[test]
fn save_writes_half_precision_and_keeps_integers() {
    let w = Tensor::new(&[[0.1f32, -1.5], [3.0, 1e-3]], &Device::Cpu).unwrap();
    let b = Tensor::new(&[1.0f32, 70000.0], &Device::Cpu).unwrap();
    let n = Tensor::new(5i64, &Device::Cpu).unwrap();
    let named = [("w", &w), ("b", &b), ("n", &n)];
    let manifest = [MANIFEST[0], MANIFEST[1], ParamSpec::counter("n")];
    for (dtype, name, w_back, b_back) in [
        // f16 rounds 0.1 to 1638/16384 = 0.0999755859375 and 1e-3 =
        // 1.024 * 2^-10 to (1 + 25/1024) * 2^-10 = 0.00100040435791015625;
        // 70000 exceeds 65504 and becomes inf.
        (
            DType::F16,
            "F16",
            [1638.0 / 16384.0, -1.5, 3.0, 1049.0 / 1_048_576.0],
            [1.0, f32::INFINITY],
        ),
        // bf16 keeps 8 significant bits: 0.1 -> 205/2048 = 0.10009765625, 1e-3 ->
        // (1 + 3/128) * 2^-10 = 131/131072, 70000 -> 70144.
        (
            DType::BF16,
            "BF16",
            [205.0 / 2048.0, -1.5, 3.0, 131.0 / 131_072.0],
            [1.0, 70144.0],
        ),
    ] {
        let path = scratch(&format!("saved-{name}.safetensors"));
        SaveOptions::new()
            .dtype(dtype)
            .metadata("by", "netdsl")
            .save(&path, &named)
            .unwrap();
        let file = std::fs::read(&path).unwrap();
        let n_header = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&file[8..8 + n_header]).unwrap();
        assert_eq!(header["w"]["dtype"], name);
        assert_eq!(header["n"]["dtype"], "I64");
        assert_eq!(header["__metadata__"]["by"], "netdsl");
        assert_eq!(file.len(), 8 + n_header + 2 * 6 + 8);
        let mut back = LoadOptions::new()
            .load("Net", &path, &manifest, &Device::Cpu)
            .unwrap();
        assert_eq!(
            values(&take(&mut back, "Net", &manifest[0]).unwrap()),
            w_back
        );
        assert_eq!(
            values(&take(&mut back, "Net", &manifest[1]).unwrap()),
            b_back
        );
        let n = take(&mut back, "Net", &manifest[2]).unwrap();
        assert_eq!(n.to_scalar::<i64>().unwrap(), 5);
    }
    assert!(matches!(
        SaveOptions::new()
            .dtype(DType::U8)
            .save(scratch("u8.safetensors"), &named),
        Err(Error::Format { .. })
    ));
}

#[test]
fn save_leaves_no_temporary_file_and_fails_cleanly() {
    let dir = scratch("atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let w = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
    let path = dir.join("w.safetensors");
    SaveOptions::new().save(&path, &[("w", &w)]).unwrap();
    SaveOptions::new().save(&path, &[("w", &w)]).unwrap();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["w.safetensors"]);
    let nowhere = dir.join("no-such-dir").join("w.safetensors");
    assert!(matches!(
        SaveOptions::new().save(&nowhere, &[("w", &w)]),
        Err(Error::Io {
            action: "write",
            ..
        })
    ));
}

/// `w` fits, `b` has the wrong shape, `x` is not the network's.
const MIXED: &str = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},"x":{"dtype":"F32","shape":[1],"data_offsets":[20,24]}}"#;

#[test]
fn strict_refuses_what_non_strict_reports() {
    let path = write("mixed.safetensors", MIXED, &good_data());
    match load(&path, &LoadOptions::new()) {
        Err(Error::Weights(e)) => assert_eq!(
            e.problems,
            [
                WeightProblem::Shape {
                    name: "b".into(),
                    expected: vec![2],
                    found: vec![1]
                },
                WeightProblem::Unexpected {
                    name: "x".into(),
                    found: vec![1]
                }
            ]
        ),
        other => panic!("{other:?}"),
    }
    let w = load(&path, &LoadOptions::new().strict(false)).unwrap();
    let report = w.report().clone();
    assert_eq!(report.loaded, ["w"]);
    assert_eq!(report.mismatched(), ["b"]);
    assert_eq!(report.unexpected(), ["x"]);
    assert!(report.missing().is_empty());
    assert!(!report.is_complete());
    assert!(report
        .to_string()
        .starts_with("`Net` loaded 1 tensors from"));
    assert!(report
        .to_string()
        .contains("\n  - tensor `b` has shape [1], expected [2]"));
    // The mis-shaped `b` is never loaded: it gets the default initialisation
    // (here seeded), or the values the network had.
    let mut seeded = w.init_missing_seeded(7);
    let b = take(&mut seeded, "Net", &MANIFEST[1]).unwrap();
    let init = Initializer::seeded(7, &Device::Cpu)
        .take(&MANIFEST[1])
        .unwrap();
    assert_eq!(values(&b), values(&init));
    let current = Tensor::new(&[-1f32, -2.0], &Device::Cpu).unwrap();
    let old_w = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
    let mut kept = load(&path, &LoadOptions::new().strict(false))
        .unwrap()
        .keep_missing(&[("w", &old_w), ("b", &current)]);
    assert_eq!(
        take_all(&mut kept),
        [vec![1.0, 2.0, 3.0, 4.0], vec![-1.0, -2.0]]
    );
}

#[test]
fn keys_are_remapped_by_prefix_and_function() {
    let dp = r#"{"module.w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"module.b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#;
    let path = write("dp.safetensors", dp, &good_data());
    assert!(
        matches!(load(&path, &LoadOptions::new()), Err(Error::Weights(e)) if e.problems.len() == 4)
    );
    let mut w = load(&path, &LoadOptions::new().strip_prefix("module.")).unwrap();
    assert_eq!(take_all(&mut w), [vec![1.0, 2.0, 3.0, 4.0], vec![5.0, 6.0]]);

    // A sub-network out of a bigger file: the rest is ignored, not unexpected.
    let big = r#"{"enc.w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"enc.b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},"dec.w":{"dtype":"F32","shape":[1],"data_offsets":[24,28]}}"#;
    let mut data = good_data();
    data.extend(f32s(&[9.0]));
    let path = write("big.safetensors", big, &data);
    let mut w = load(&path, &LoadOptions::new().prefix("enc.")).unwrap();
    assert_eq!(w.report().ignored, ["dec.w"]);
    assert!(w.report().is_complete());
    assert_eq!(take_all(&mut w), [vec![1.0, 2.0, 3.0, 4.0], vec![5.0, 6.0]]);

    // A function for anything else: here a renamed layer, and a key dropped.
    let opts = LoadOptions::new().remap(|k| match k {
        "enc.w" => Some("w".into()),
        "enc.b" => Some("b".into()),
        _ => None,
    });
    let mut w = load(&path, &opts).unwrap();
    assert_eq!(take_all(&mut w)[1], [5.0, 6.0]);
    // Rules apply in order.
    let chain = LoadOptions::new()
        .strip_prefix("module.")
        .prefix("enc.")
        .remap(|k| Some(k.to_uppercase()));
    assert_eq!(chain.map_key("module.enc.w").as_deref(), Some("W"));
    assert_eq!(chain.map_key("dec.w"), None);
}

#[test]
fn keys_colliding_after_remapping_are_an_error_even_when_not_strict() {
    let both = r#"{"module.w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,32]}}"#;
    let path = write("both.safetensors", both, &f32s(&[0.0; 8]));
    let opts = LoadOptions::new().strict(false).strip_prefix("module.");
    match load(&path, &opts) {
        Err(Error::Weights(e)) => assert_eq!(
            e.problems,
            [WeightProblem::Duplicate {
                name: "w".into(),
                keys: vec!["module.w".into(), "w".into()]
            }]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tensor_map_takes_the_same_options() {
    let mut map = std::collections::HashMap::new();
    map.insert(
        "module.w".to_string(),
        Tensor::new(&[[1f64, 2.0], [3.0, f64::NAN]], &Device::Cpu).unwrap(),
    );
    map.insert(
        "module.extra".to_string(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let opts = LoadOptions::new().strict(false).strip_prefix("module.");
    let w = opts
        .load_map("Net", map.clone(), MANIFEST, &Device::Cpu)
        .unwrap();
    assert_eq!(w.report().missing(), ["b"]);
    assert_eq!(w.report().unexpected(), ["extra"]);
    assert!(matches!(
        opts.check_finite(true)
            .load_map("Net", map, MANIFEST, &Device::Cpu),
        Err(Error::Malformed {
            problem: FileProblem::NonFinite { index: 3, .. },
            ..
        })
    ));
}
