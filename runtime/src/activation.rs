//! Activations: [`activate`], an activation as its own layer (the
//! runtime's vectorised pass, in training as a custom op with a one-pass
//! backward), and those candle lacks as one op, ReLU6 and
//! Hardswish (MobileNet's). Activations right after a convolution or a
//! linear layer are fused into its epilogue (`conv::Epilogue`).

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::conv::Epilogue;
use crate::host::with_f32;
use crate::Result;

/// Elements from which [`activate`] splits its pass between threads.
const PAR_ELEMS: usize = 1 << 16;

/// `act(x)`. On f32 CPU data, one pass of the epilogue the convolution and
/// linear kernels apply (the same formulas; the exact GELU within 2e-7),
/// split between the runtime's threads for large tensors: candle's own
/// element-wise ops run on a pool whose workers spin for a while after
/// every op and take the cores from the kernel that runs next (a ResNet
/// block's `(y + shortcut) -> relu` did so eight times a forward). Where a
/// gradient is tracked, as a custom op whose backward is one pass too
/// (PyTorch's derivatives at the kinks: ReLU'(0) = 0), instead of candle's
/// several single-threaded passes (a comparison, a cast, a product) for
/// ReLU's. Other dtypes and devices: candle's differentiable op.
pub fn activate(x: &Tensor, act: Epilogue) -> Result<Tensor> {
    if act == Epilogue::None {
        return Ok(x.clone());
    }
    if x.dtype() == DType::F32 && x.device().is_cpu() {
        if x.track_op() {
            return Ok(x.contiguous()?.apply_op1(ActOp(act))?);
        }
        if let Some(y) = with_f32(x, |xv| pass(xv, act)) {
            return Ok(Tensor::from_vec(y, x.shape(), x.device())?);
        }
    }
    Ok(act.on_tensor(x.clone())?)
}

/// `act` of every element of `xv`, in pieces split between threads from
/// [`PAR_ELEMS`] elements.
fn pass(xv: &[f32], act: Epilogue) -> Vec<f32> {
    let n = xv.len();
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
        crate::conv::on_pool(|_| {
            dst.par_chunks_mut(chunk)
                .zip(xv.par_chunks(chunk))
                .for_each(|(yc, xc)| f(yc, xc))
        });
    } else {
        // In cache-sized pieces: each is activated right after it is
        // copied.
        for (yc, xc) in dst.chunks_mut(PAR_ELEMS / 4).zip(xv.chunks(PAR_ELEMS / 4)) {
            f(yc, xc);
        }
    }
    // SAFETY: `f` wrote all `n` values.
    unsafe { y.set_len(n) };
    y
}

/// [`activate`] recording its gradient: forward [`pass`], backward the
/// convolution epilogue's chain rule (`conv::math::chain`) over the output,
/// or the input where the derivative cannot be read off the output.
struct ActOp(Epilogue);

impl candle_core::CustomOp1 for ActOp {
    fn name(&self) -> &'static str {
        "netdsl-activation"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let x = crate::host::f32_slice("activation", storage, layout)?;
        Ok((
            candle_core::CpuStorage::F32(pass(x, self.0)),
            layout.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let act = self.0;
        let v = if crate::conv::math::derivative_from_output(act) {
            res
        } else {
            arg
        };
        let mut g = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let v = v.contiguous()?;
        let done = with_f32(&v, |vv| {
            crate::conv::on_pool(|_| {
                g.par_chunks_mut(PAR_ELEMS / 4)
                    .zip(vv.par_chunks(PAR_ELEMS / 4))
                    .for_each(|(gc, vc)| crate::conv::math::chain(act, vc, gc))
            })
        });
        if done.is_none() {
            candle_core::bail!("activation: the saved tensor is not f32 CPU data");
        }
        Ok(Some(Tensor::from_vec(g, arg.shape(), arg.device())?))
    }
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
    /// tensor (split between threads) and a small one, strided input too.
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
                    let got = activate(input, act).unwrap();
                    let want = act.on_tensor(input.clone()).unwrap();
                    assert_eq!(got.dims(), want.dims());
                    let d = parity::rel_err(&got, &want);
                    assert!(d < 1e-6, "{act:?} on {n} elements: differs by {d}");
                }
            }
        }
    }

    /// With a gradient tracked, the custom op's output and input gradient
    /// equal candle's differentiable ops' (away from the kinks), on a large
    /// tensor and a strided small one; at the kink ReLU's derivative is
    /// PyTorch's 0.
    #[test]
    fn tracked_activations_match_candles_gradients() {
        let dev = Device::Cpu;
        for n in [1000usize, 3 * PAR_ELEMS + 7] {
            // Never exactly at a kink (0, or 6 for ReLU6), where candle's
            // derivative and PyTorch's differ: |x| < 5.5 and no zero (a
            // uniform draw of 200K floats hits 0.0 about once in 80 runs).
            let vals: Vec<f32> = (0..n / 5 * 5)
                .map(|i| 5.5 * ((0.37 * i as f64 + 0.1).sin() as f32))
                .map(|v| if v == 0.0 { 0.25 } else { v })
                .collect();
            let base = Tensor::from_vec(vals, (n / 5, 5), &dev).unwrap();
            let up = Tensor::rand(-1f32, 1.0, (5, n / 5), &dev).unwrap();
            for act in [
                Epilogue::Relu,
                Epilogue::LeakyRelu(0.1),
                Epilogue::LeakyRelu(-0.5),
                Epilogue::Gelu,
                Epilogue::Silu,
                Epilogue::Sigmoid,
                Epilogue::Relu6,
            ] {
                let v = candle_core::Var::from_tensor(&base).unwrap();
                let run = |y: Tensor| {
                    let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
                    (y, g.get(v.as_tensor()).unwrap().clone())
                };
                let x = v.as_tensor().t().unwrap();
                let (y, g) = run(activate(&x, act).unwrap());
                let (y0, g0) = run(act.on_tensor(x.clone()).unwrap());
                let (dy, dg) = (parity::rel_err(&y, &y0), parity::rel_err(&g, &g0));
                assert!(dy < 1e-6 && dg < 1e-5, "{act:?}, {n}: y {dy}, grad {dg}");
            }
        }
        let v = candle_core::Var::new(&[-1f32, 0.0, 2.0, 6.0], &dev).unwrap();
        for (act, want) in [
            (Epilogue::Relu, [0.0, 0.0, 1.0, 1.0]),
            (Epilogue::Relu6, [0.0, 0.0, 1.0, 0.0]),
        ] {
            let y = activate(v.as_tensor(), act).unwrap();
            let g = y.sum_all().unwrap().backward().unwrap();
            let g: Vec<f32> = g.get(v.as_tensor()).unwrap().to_vec1().unwrap();
            assert_eq!(g, want, "{act:?}");
        }
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
