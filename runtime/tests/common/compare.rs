//! How the parity tests measure a difference, written against candle
//! alone, so that both the runtime's tests (`runtime/tests/common`) and the
//! facade's (`tests/common`, through `#[path]`) use this one copy.

use candle_core::Tensor;

/// The largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// `max |a - b| / max(1, max |b|)`: the parity tolerance's measure.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let diff = max_abs_diff(a, b);
    let scale: f32 = b.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    diff / scale.max(1.0)
}

/// The recurrent fixtures' input formula (`scripts/gen_recurrent_fixtures.py`):
/// element `i` (row-major) is `0.5 * sin(0.37 * i + 0.1 + phase(name))`,
/// with `phase(name)` = (sum over bytes b_k of (k + 1) * b_k) mod 1000 / 100.
/// Every input and parameter of those fixtures is rebuilt from it by name.
pub fn formula(shape: &[usize], name: &str) -> Tensor {
    let phase = (name
        .bytes()
        .enumerate()
        .map(|(k, b)| (k as u64 + 1) * b as u64)
        .sum::<u64>()
        % 1000) as f64
        / 100.0;
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (0.5 * (0.37 * i as f64 + 0.1 + phase).sin()) as f32)
        .collect();
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap()
}
