//! Loading as a user meets it: PyTorch checkpoints in half precision with
//! extra tensors, `module.` prefixes and sub-networks; a failed load leaves
//! the network as it was; one network serves many threads; saving never
//! tears the file another thread reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use netdsl::candle::{DType, Device, Tensor};
use netdsl::{network, Error, FileProblem, LoadOptions, LoadReport, SaveOptions, WeightProblem};

network! {
    /// The network of `scripts/gen_loading_fixtures.py`.
    pub Small(x: [B, 1, 8, 8]) -> [B, 5] {
        x -> conv: Conv2d(1 -> 4, kernel = 3, padding = 1) -> bn: BatchNorm2d -> relu -> max_pool(2)
          -> flatten -> fc: Linear(64 -> 5)
    }

    /// Large enough (4 MB) that writing it takes a while.
    pub Wide(x: [B, 1000]) -> [B, 1000] {
        x -> fc: Linear(1000 -> 1000)
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A file in this process's scratch folder, removed (with the folder, once
/// empty) when dropped, so test runs leave nothing behind in the temp dir.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A file `name` in a directory of its own: tests run in parallel, and one
/// test's `Scratch` removing a shared directory the moment it was empty
/// made another test's save fail (seen once in CI).
fn scratch(name: &str) -> Scratch {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("netdsl-loading-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir.join(name))
}

fn extras(name: &str) -> HashMap<String, Tensor> {
    netdsl::candle::safetensors::load(fixture(name), &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let d: Vec<f32> = a
        .sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    d.into_iter().fold(0.0, f32::max)
}

fn bits(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.into_iter().map(f32::to_bits).collect()
}

fn state(net: &Small) -> Vec<(String, Vec<u8>)> {
    net.named_tensors()
        .into_iter()
        .map(|(n, t)| {
            let t = t.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
            let v: Vec<f64> = t.to_vec1().unwrap();
            (
                n.to_string(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect()
}

/// Loads `path` into `net` as PyTorch's `load_state_dict` does: what the
/// file lacks keeps the network's values; on any error `net` is untouched.
fn reload(net: &mut Small, path: &Path, opts: &LoadOptions) -> netdsl::Result<LoadReport> {
    let mut weights = opts
        .load(Small::NAME, path, Small::MANIFEST, &Device::Cpu)?
        .keep_missing(&net.named_tensors());
    *net = Small::from_source(&mut weights)?;
    Ok(weights.into_report())
}

#[test]
fn pytorch_f16_data_parallel_checkpoint_with_extra_tensors() {
    let path = fixture("loading_f16_dp.safetensors");
    // Strict (the default) refuses the extra tensors, as the issue found.
    let err = Small::load(&path, &Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("unexpected tensor `input` of shape [2, 1, 8, 8]"),
        "{err}"
    );
    let opts = LoadOptions::new().strict(false).strip_prefix("module.");
    let mut weights = opts
        .load(Small::NAME, &path, Small::MANIFEST, &Device::Cpu)
        .unwrap();
    let net = Small::from_source(&mut weights).unwrap();
    let report = weights.report();
    assert_eq!(report.loaded.len(), Small::MANIFEST.len());
    assert_eq!(report.unexpected(), ["input", "output"]);
    assert!(report.missing().is_empty() && report.mismatched().is_empty());
    // The f16 weights are widened to f32 and the output is PyTorch's, from
    // the same f16-rounded weights.
    assert_eq!(net.conv.weight.dtype(), DType::F32);
    let io = extras("loading_f16_dp.safetensors");
    let y = net.forward(&io["input"]).unwrap();
    let d = max_abs_diff(&y, &io["output"]);
    assert!(d < 1e-5, "max abs diff {d}");

    // Strict again, the two extras dropped by a function.
    let strict = LoadOptions::new()
        .strip_prefix("module.")
        .remap(|k| (k != "input" && k != "output").then(|| k.to_string()));
    let mut weights = strict
        .load(Small::NAME, &path, Small::MANIFEST, &Device::Cpu)
        .unwrap();
    assert_eq!(weights.report().ignored, ["input", "output"]);
    let again = Small::from_source(&mut weights).unwrap();
    assert_eq!(bits(&again.forward(&io["input"]).unwrap()), bits(&y));
}

#[test]
fn pytorch_bf16_sub_network_by_prefix() {
    let path = fixture("loading_bf16_sub.safetensors");
    let mut weights = LoadOptions::new()
        .prefix("encoder.")
        .load(Small::NAME, &path, Small::MANIFEST, &Device::Cpu)
        .unwrap();
    assert!(weights.report().is_complete());
    assert_eq!(weights.report().ignored, ["head.weight", "output"]);
    let net = Small::from_source(&mut weights).unwrap();
    let input = extras("loading_f16_dp.safetensors")["input"].clone();
    let d = max_abs_diff(
        &net.forward(&input).unwrap(),
        &extras("loading_bf16_sub.safetensors")["output"],
    );
    assert!(d < 1e-5, "max abs diff {d}");
}

#[test]
fn saved_half_precision_loads_back_rounded() {
    let net = Small::new_seeded(3, &Device::Cpu).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let path = scratch(&format!("small-{dtype:?}.safetensors"));
        SaveOptions::new()
            .dtype(dtype)
            .save(&path, &net.named_tensors())
            .unwrap();
        let back = Small::load(&path, &Device::Cpu).unwrap();
        for ((name, a), (_, b)) in net.named_tensors().into_iter().zip(back.named_tensors()) {
            let rounded = a.to_dtype(dtype).unwrap().to_dtype(a.dtype()).unwrap();
            assert_eq!(b.dtype(), a.dtype(), "{name}");
            if a.dtype() == DType::F32 {
                assert_eq!(bits(b), bits(&rounded), "{name} as {dtype:?}");
            }
        }
    }
}

/// `net`'s file with `edit` applied to its bytes; `edit` gets the header
/// and the offset of the data section.
fn corrupted(
    net: &Small,
    name: &str,
    edit: impl FnOnce(&mut Vec<u8>, &serde_json::Value, usize),
) -> Scratch {
    let path = scratch(name);
    net.save(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut bytes, &header, 8 + n);
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// The byte range of the tensor stored last in the file.
fn last_tensor(header: &serde_json::Value) -> (String, usize) {
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| (k.clone(), v["data_offsets"][0].as_u64().unwrap() as usize))
        .max_by_key(|(_, start)| *start)
        .unwrap()
}

#[test]
fn a_failed_load_leaves_the_network_unchanged() {
    let other = Small::new_seeded(1, &Device::Cpu).unwrap();
    let mut net = Small::new_seeded(2, &Device::Cpu).unwrap();
    let x = extras("loading_f16_dp.safetensors")["input"].clone();
    let before = (state(&net), bits(&net.forward(&x).unwrap()));

    // Each file is `other`'s, broken in its last tensor, so a loader that
    // went tensor by tensor would have loaded the others first.
    let truncated = corrupted(&other, "truncated.safetensors", |b, _, _| {
        b.truncate(b.len() - 2)
    });
    let nan = corrupted(&other, "nan.safetensors", |b, h, data| {
        let (_, start) = last_tensor(h);
        b[data + start..data + start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let bad_dtype = corrupted(&other, "dtype.safetensors", |b, h, data| {
        let mut h = h.clone();
        let last = last_tensor(&h).0;
        h[last.as_str()]["dtype"] = "Q32".into();
        let mut patched = serde_json::to_string(&h).unwrap().into_bytes();
        patched.resize(data - 8, b' ');
        b[8..data].copy_from_slice(&patched);
    });
    let misshaped = {
        let path = scratch("misshaped.safetensors");
        let mut named: Vec<(&str, Tensor)> = other
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.clone()))
            .collect();
        named.last_mut().unwrap().1 = Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap();
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (*n, t)).collect();
        SaveOptions::new().save(&path, &refs).unwrap();
        path
    };

    let strict = LoadOptions::new();
    for (path, opts) in [
        (&truncated, &strict),
        (&nan, &LoadOptions::new().check_finite(true)),
        (&bad_dtype, &strict),
        (&misshaped, &strict),
    ] {
        let err = reload(&mut net, path, opts).unwrap_err();
        match &err {
            Error::Malformed { problem, .. } => assert!(problem.tensor().is_some(), "{err}"),
            Error::Weights(w) => assert!(matches!(w.problems[..], [WeightProblem::Shape { .. }])),
            other => panic!("{other:?}"),
        }
        assert_eq!(state(&net), before.0, "{err}");
        assert_eq!(bits(&net.forward(&x).unwrap()), before.1, "{err}");
    }

    // Not strict, the mis-shaped tensor keeps the network's value and the
    // rest is `other`'s.
    let report = reload(&mut net, &misshaped, &LoadOptions::new().strict(false)).unwrap();
    assert_eq!(report.mismatched(), ["fc.bias"]);
    let now = state(&net);
    let theirs = state(&other);
    for ((name, mine), ((_, old), (_, other))) in now.iter().zip(before.0.iter().zip(&theirs)) {
        let expected = if name == "fc.bias" { old } else { other };
        assert_eq!(mine, expected, "{name}");
    }
}

/// Eight inputs that differ (the formula input, shifted per index).
fn inputs() -> Vec<Tensor> {
    (0..8)
        .map(|k| {
            let v: Vec<f32> = (0..2 * 64)
                .map(|i| ((0.37f64 * (i + 128 * k) as f64 + 0.1).sin()) as f32)
                .collect();
            Tensor::from_vec(v, (2, 1, 8, 8), &Device::Cpu).unwrap()
        })
        .collect()
}

#[test]
fn eight_threads_get_bit_identical_results() {
    let path = fixture("loading_f16_dp.safetensors");
    let opts = LoadOptions::new().strict(false).strip_prefix("module.");
    let load = || {
        let mut w = opts
            .load(Small::NAME, &path, Small::MANIFEST, &Device::Cpu)
            .unwrap();
        Small::from_source(&mut w).unwrap()
    };
    let xs = inputs();
    let serial: Vec<Vec<u32>> = {
        let net = load();
        xs.iter().map(|x| bits(&net.forward(x).unwrap())).collect()
    };
    // A fresh network, so the threads also race to compute the batch-norm
    // fold on their first call.
    let net = load();
    let results: Vec<Vec<Vec<u32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = xs
            .iter()
            .map(|x| {
                let net = &net;
                s.spawn(move || (0..25).map(|_| bits(&net.forward(x).unwrap())).collect())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, runs) in results.iter().enumerate() {
        for y in runs {
            assert_eq!(y, &serial[i], "thread {i}");
        }
    }
}

#[test]
fn saving_while_forwarding_never_tears_the_file() {
    let net = Wide::new_seeded(0, &Device::Cpu).unwrap();
    let path = scratch("wide.safetensors");
    net.save(&path).unwrap();
    let x = Tensor::ones((4, 1000), DType::F32, &Device::Cpu).unwrap();
    let expected = bits(&net.forward(&x).unwrap());
    let done = std::sync::atomic::AtomicBool::new(false);
    let saved = std::sync::atomic::AtomicBool::new(false);
    let loads = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(bits(&net.forward(&x).unwrap()), expected);
            }
        });
        s.spawn(|| {
            for _ in 0..30 {
                net.save(&path).unwrap();
            }
            saved.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let reader = s.spawn(|| {
            let mut loads = 0;
            while !saved.load(std::sync::atomic::Ordering::Relaxed) || loads < 5 {
                let back = Wide::load(&path, &Device::Cpu)
                    .unwrap_or_else(|e| panic!("load {loads} while saving: {e}"));
                assert_eq!(bits(&back.fc.weight), bits(&net.fc.weight));
                loads += 1;
            }
            loads
        });
        let loads = reader.join().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        loads
    });
    assert!(loads >= 5);
    // No temporary file is left beside the target.
    let dir = path.parent().unwrap();
    let stray: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains("wide.safetensors.")
        })
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn malformed_errors_name_the_file_and_the_tensor() {
    let net = Small::new_seeded(0, &Device::Cpu).unwrap();
    let path = corrupted(&net, "cut.safetensors", |b, _, _| b.truncate(b.len() - 1));
    let err = Small::load(&path, &Device::Cpu).unwrap_err();
    let Error::Malformed {
        problem: FileProblem::Truncated { tensor, .. },
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(Small::MANIFEST.iter().any(|s| s.name == tensor));
    let msg = err.to_string();
    assert!(
        msg.contains("cut.safetensors` cannot be loaded: the file is truncated: tensor `"),
        "{msg}"
    );
}
