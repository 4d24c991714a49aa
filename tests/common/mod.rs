//! Helpers shared by the integration tests that compare with PyTorch
//! fixtures. Each test crate uses some of them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use netdsl::candle::{Device, Tensor};

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fixture's tensors without the ones that are not the state_dict
/// (`input*`, `output*`, `train.*`, `grad.*`).
pub fn state_dict(file: &str) -> HashMap<String, Tensor> {
    tensors(file)
        .into_iter()
        .filter(|(k, _)| {
            !(k.starts_with("input")
                || k.starts_with("output")
                || k.starts_with("train.")
                || k.starts_with("grad."))
        })
        .collect()
}

/// A JSON list of names from a fixture's safetensors metadata
/// (`state_dict_order`: the keys in PyTorch's order).
pub fn metadata_list(file: &str, key: &str) -> Vec<String> {
    let bytes = std::fs::read(fixture(file)).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let list = header["__metadata__"][key].as_str().unwrap();
    serde_json::from_str(list).unwrap()
}

/// Every tensor of a fixture file, on the CPU.
pub fn tensors(name: &str) -> HashMap<String, Tensor> {
    netdsl::candle::safetensors::load(fixture(name), &Device::Cpu).unwrap()
}

/// The fixtures' input (`scripts/fixture_common.py`): element `i`
/// (row-major) is `sin(0.37 * i + 0.1)`, computed in f64, rounded to f32.
pub fn formula_input(shape: (usize, usize, usize, usize)) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f32> = (0..n)
        .map(|i| ((0.37_f64 * i as f64 + 0.1).sin()) as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// `max |a - b| / max(1, max |b|)`: the parity tolerance's measure, the
/// runtime tests' own copy.
#[path = "../../runtime/tests/common/compare.rs"]
mod compare;
#[allow(unused_imports)] // not every test crate compares
pub use compare::{formula, max_abs_diff, rel_err};

/// Every parameter of `manifest` from the recurrent fixtures' [`formula`] of
/// its PyTorch name without the layer's path (`lstm.weight_ih_l0` ->
/// `weight_ih_l0`): the weights those fixtures were computed with.
pub fn formula_weights(manifest: &[netdsl::ParamSpec]) -> HashMap<String, Tensor> {
    manifest
        .iter()
        .map(|p| {
            let bare = p.name.split_once('.').map_or(p.name, |(_, b)| b);
            (p.name.to_string(), formula(p.shape, bare))
        })
        .collect()
}

/// A network's manifest as (name, shape, dtype) rows.
pub fn manifest(specs: &[netdsl::ParamSpec]) -> Vec<(String, Vec<usize>, String)> {
    specs
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.shape.to_vec(),
                format!("{:?}", s.dtype).to_uppercase(),
            )
        })
        .collect()
}

/// A torchvision model's state_dict manifest from
/// `tests/fixtures/torchvision_manifests.json` (`scripts/gen_cnn_fixtures.py`).
pub fn torchvision(model: &str) -> Vec<(String, Vec<usize>, String)> {
    let text = std::fs::read_to_string(fixture("torchvision_manifests.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[model]
        .as_array()
        .unwrap_or_else(|| panic!("no manifest for {model}"))
        .iter()
        .map(|e| {
            let shape = e["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (
                e["name"].as_str().unwrap().to_string(),
                shape,
                e["dtype"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
