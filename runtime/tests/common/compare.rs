//! How the parity tests measure a difference, written against candle
//! alone, so that both the runtime's tests (`runtime/tests/common`) and the
//! facade's (`tests/common`, through `#[path]`) use this one copy.

use candle_core::Tensor;

/// `max |a - b| / max(1, max |b|)`: the parity tolerance's measure.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let diff: f32 = a
        .sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let scale: f32 = b.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    diff / scale.max(1.0)
}
