//! Activations: [`activate`], an activation as its own layer (in
//! inference the runtime's vectorised pass, in training candle's
//! differentiable op), and those candle lacks as one op, ReLU6 and
//! Hardswish (MobileNet's). Activations right after a convolution or a
//! linear layer are fused into its epilogue (`conv::Epilogue`).

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::conv::Epilogue;
use crate::host::with_f32;
use crate::Result;

/// Elements from which [`activate`] splits its pass between threads.
const PAR_ELEMS: usize = 1 << 16;

/// `act(x)`. In inference, on f32 CPU data no gradient is tracked for, one
/// pass of the epilogue the convolution and linear kernels apply (the same
/// formulas; the exact GELU within 2e-7), split between the runtime's
/// threads for large tensors: candle's own element-wise ops run on a pool
/// whose workers spin for a while after every op and take the cores from
/// the kernel that runs next (a ResNet block's `(y + shortcut) -> relu`
/// did so eight times a forward). Otherwise, and whenever a gradient is
/// tracked, candle's differentiable op.
pub fn activate(x: &Tensor, act: Epilogue, training: bool) -> Result<Tensor> {
    if !training && !x.track_op() && x.dtype() == DType::F32 && x.device().is_cpu() {
        let n = x.elem_count();
        let y = with_f32(x, |xv| {
            let mut y: Vec<f32> = Vec::with_capacity(n);
            let f = |yc: &mut [std::mem::MaybeUninit<f32>], xc: &[f32]| {
                for (y, &v) in yc.iter_mut().zip(xc) {
                    y.write(v);
                }
                // SAFETY: every element of `yc` was written just above.
                let yc = unsafe { &mut *(yc as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
                crate::conv::math::epilogue(act, 0.0, yc);
            };
            let dst = &mut y.spare_capacity_mut()[..n];
            if n >= PAR_ELEMS {
                let chunk = PAR_ELEMS / 4;
                dst.par_chunks_mut(chunk)
                    .zip(xv.par_chunks(chunk))
                    .for_each(|(yc, xc)| f(yc, xc));
            } else {
                // In cache-sized pieces: each is activated right after it
                // is copied.
                for (yc, xc) in dst.chunks_mut(PAR_ELEMS / 4).zip(xv.chunks(PAR_ELEMS / 4)) {
                    f(yc, xc);
                }
            }
            // SAFETY: `f` wrote all `n` values (`xv` holds `n`: contiguous).
            unsafe { y.set_len(n) };
            y
        });
        if let Some(y) = y {
            return Ok(Tensor::from_vec(y, x.shape(), x.device())?);
        }
    }
    Ok(act.on_tensor(x.clone())?)
}

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
    use crate::rnn::parity;
    use candle_core::Device;

    /// The inference pass equals candle's op for every activation (within
    /// float rounding: the exact GELU's erf within 2e-7), on a large
    /// tensor (split between threads) and a small one, strided input too;
    /// a tracked input takes candle's differentiable op.
    #[test]
    fn activate_equals_candles_ops() {
        let dev = Device::Cpu;
        for n in [1000usize, 3 * PAR_ELEMS + 7] {
            let x = Tensor::rand(-6f32, 6.0, (n / 5, 5), &dev).unwrap();
            let strided = x.t().unwrap();
            for act in [
                Epilogue::None,
                Epilogue::Relu,
                Epilogue::LeakyRelu(0.1),
                Epilogue::Gelu,
                Epilogue::Silu,
                Epilogue::Sigmoid,
                Epilogue::Relu6,
            ] {
                for input in [&x, &strided] {
                    let got = activate(input, act, false).unwrap();
                    let want = act.on_tensor(input.clone()).unwrap();
                    assert_eq!(got.dims(), want.dims());
                    let d = parity::rel_err(&got, &want);
                    assert!(d < 1e-6, "{act:?} on {n} elements: differs by {d}");
                }
            }
        }
        let v = candle_core::Var::new(&[-1f32, 2.0], &dev).unwrap();
        let y = activate(v.as_tensor(), Epilogue::Relu, true).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = g.get(v.as_tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(g, [0.0, 1.0]);
    }

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
