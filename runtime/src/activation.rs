//! Activations candle lacks as one op: ReLU6 and Hardswish (MobileNet's).
//! The others are candle's own (`relu`, `gelu_erf`, `silu`, ..), or fused
//! into the convolution before them (`conv::Epilogue`).

use candle_core::Tensor;

use crate::Result;

/// ReLU6: `min(max(x, 0), 6)`.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    Ok(x.clamp(0f32, 6f32)?)
}

/// Hardswish: `x * relu6(x + 3) / 6`.
pub fn hardswish(x: &Tensor) -> Result<Tensor> {
    Ok(x.mul(&(x.affine(1.0, 3.0)?.clamp(0f32, 6f32)? / 6.0)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn relu6_and_hardswish_match_their_formulas() {
        let x = Tensor::new(&[-4f32, -1.5, 0.0, 1.0, 3.0, 7.0], &Device::Cpu).unwrap();
        let r: Vec<f32> = relu6(&x).unwrap().to_vec1().unwrap();
        assert_eq!(r, [0.0, 0.0, 0.0, 1.0, 3.0, 6.0]);
        let h: Vec<f32> = hardswish(&x).unwrap().to_vec1().unwrap();
        // x * min(max(x + 3, 0), 6) / 6
        let want = [0.0, -0.375, 0.0, 2.0 / 3.0, 3.0, 7.0];
        for (g, w) in h.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{h:?}");
        }
    }
}
