//! Helpers shared by the runtime's parity tests: reading a PyTorch fixture
//! from the repository's `tests/fixtures/`, the devices to run on, and the
//! relative error. Each test crate uses some of them. (The facade's tests
//! have theirs in the root `tests/common/`, which these cannot reach; the
//! relative error is one file both use.)
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};

mod compare;
#[allow(unused_imports)] // not every test crate compares
pub use compare::{formula, rel_err};

/// Every tensor of `tests/fixtures/<file>`, on the CPU.
pub fn load_fixture(file: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(file);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

/// Tensor `name` of a fixture, on `dev`.
pub fn on(fixtures: &HashMap<String, Tensor>, name: &str, dev: &Device) -> Tensor {
    fixtures
        .get(name)
        .unwrap_or_else(|| panic!("fixture has no `{name}`"))
        .to_device(dev)
        .unwrap()
}

/// The CPU, and the first GPU when built with `cuda`.
pub fn devices() -> Vec<Device> {
    let mut devs = vec![Device::Cpu];
    if cfg!(feature = "cuda") {
        devs.push(Device::new_cuda(0).expect("built with `cuda` but no CUDA device"));
    }
    devs
}
