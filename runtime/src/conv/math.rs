//! Elementwise pieces: the fused epilogue (bias + activation) and the
//! activation derivatives, with branch-free `exp` and `erf` that the
//! compiler vectorises (libm's are scalar calls, ~20 ns each, as slow as the
//! convolution's own arithmetic for small channel counts).
//!
//! Hot loops are compiled twice, for the baseline target and with AVX2+FMA,
//! and picked at run time ([`simd!`]).

use super::Epilogue;

/// Defines `$name(args)` that runs `$body` compiled for AVX2+FMA when the CPU
/// has them, else for the baseline target.
macro_rules! simd {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) {
            #[inline(always)]
            fn body($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($a: $t),*) {
                    body($($a),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the enabled features.
                    return unsafe { fast($($a),*) };
                }
            }
            body($($a),*)
        }
    };
}
pub(crate) use simd;

/// `e^x` within 2 ulp on `[-87, 88]` (clamped outside): Cephes' `expf`
/// polynomial with round-to-nearest by the 1.5 * 2^23 trick.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let ni = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((ni + 127) << 23) as u32)
}

/// `erf(x)`, absolute error below 2e-7 (Abramowitz & Stegun 7.1.26).
#[inline(always)]
pub(super) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let e = 1.0 - poly * exp(-a * a);
    if x < 0.0 {
        -e
    } else {
        e
    }
}

#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

#[inline(always)]
fn gelu(z: f32) -> f32 {
    0.5 * z * (1.0 + erf(z * std::f32::consts::FRAC_1_SQRT_2))
}

simd! {
    /// `v[i] = act(v[i] + bias)`: the epilogue of one output row or tile.
    pub(crate) fn epilogue(act: Epilogue, bias: f32, v: &mut [f32]) {
        epilogue_inline(act, bias, v)
    }
}

/// [`epilogue`]'s body, for kernels that apply it to values still in
/// registers (inlined into their own vectorised code).
#[inline(always)]
pub(crate) fn epilogue_inline(act: Epilogue, bias: f32, v: &mut [f32]) {
    // One loop per activation, so each is a tight vectorised loop.
    match act {
        Epilogue::None => {
            if bias != 0.0 {
                v.iter_mut().for_each(|x| *x += bias);
            }
        }
        Epilogue::Relu => v.iter_mut().for_each(|x| *x = (*x + bias).max(0.0)),
        Epilogue::LeakyRelu(s) => v.iter_mut().for_each(|x| {
            let z = *x + bias;
            *x = if z > 0.0 { z } else { z * s };
        }),
        Epilogue::Gelu => v.iter_mut().for_each(|x| *x = gelu(*x + bias)),
        Epilogue::Silu => v.iter_mut().for_each(|x| {
            let z = *x + bias;
            *x = z * sigmoid(z);
        }),
        Epilogue::Sigmoid => v.iter_mut().for_each(|x| *x = sigmoid(*x + bias)),
        Epilogue::Relu6 => v.iter_mut().for_each(|x| *x = (*x + bias).clamp(0.0, 6.0)),
    }
}

/// Whether `act'` can be read off the output `y = act(z)`; otherwise the
/// backward pass recomputes `z`.
pub(crate) fn derivative_from_output(act: Epilogue) -> bool {
    match act {
        Epilogue::None | Epilogue::Relu | Epilogue::Relu6 | Epilogue::Sigmoid => true,
        Epilogue::LeakyRelu(s) => s >= 0.0,
        Epilogue::Gelu | Epilogue::Silu => false,
    }
}

simd! {
    /// `g[i] *= act'(z)`, where `v` holds `y = act(z)` when
    /// [`derivative_from_output`] says so, else `z`. PyTorch's conventions at
    /// kinks: ReLU' (0) = 0, LeakyReLU'(0) = slope.
    ///
    /// Eight at a time through registers, each stored whole: the loop over
    /// `g` itself compiled `g = if y > 0 { g } else { 0 }` to masked stores
    /// (`vmaskmovps`, microcoded on AMD and many times slower than a store).
    pub(crate) fn chain(act: Epilogue, v: &[f32], g: &mut [f32]) {
        let mut gc = g.chunks_exact_mut(8);
        let mut vc = v.chunks_exact(8);
        for (g8, v8) in (&mut gc).zip(&mut vc) {
            let mut t = [0f32; 8];
            t.copy_from_slice(g8);
            chain_into(act, v8, &t, g8);
        }
        let rest = gc.into_remainder();
        let mut t = [0f32; 8];
        t[..rest.len()].copy_from_slice(rest);
        chain_into(act, vc.remainder(), &t, rest);
    }
}

/// [`chain`]'s body: `out[i] = g[i] * act'(v[i])`, `out` not `g`, so that
/// no element is stored only on one side of a condition.
#[inline(always)]
fn chain_into(act: Epilogue, v: &[f32], g: &[f32], out: &mut [f32]) {
    let it = out.iter_mut().zip(g.iter().zip(v));
    match act {
        Epilogue::None => it.for_each(|(o, (&g, _))| *o = g),
        Epilogue::Relu => it.for_each(|(o, (&g, &y))| *o = if y > 0.0 { g } else { 0.0 }),
        Epilogue::LeakyRelu(s) => {
            // with s >= 0, y > 0 exactly when z > 0; with s < 0, v is z
            it.for_each(|(o, (&g, &v))| *o = if v > 0.0 { g } else { g * s })
        }
        Epilogue::Sigmoid => it.for_each(|(o, (&g, &y))| *o = g * (y * (1.0 - y))),
        // PyTorch's hardtanh: 1 strictly inside (0, 6), else 0.
        Epilogue::Relu6 => {
            it.for_each(|(o, (&g, &y))| *o = if y > 0.0 && y < 6.0 { g } else { 0.0 })
        }
        Epilogue::Silu => it.for_each(|(o, (&g, &z))| {
            let s = sigmoid(z);
            *o = g * (s * (1.0 + z * (1.0 - s)));
        }),
        Epilogue::Gelu => it.for_each(|(o, (&g, &z))| {
            // Phi(z) + z * phi(z)
            let cdf = 0.5 * (1.0 + erf(z * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = exp(-0.5 * z * z) * 0.398_942_3;
            *o = g * (cdf + z * pdf);
        }),
    }
}
