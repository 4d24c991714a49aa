//! Attention and the layers around it (Vaswani et al., 2017, "Attention is
//! all you need"; Dosovitskiy et al., 2021, the vision transformer), with
//! PyTorch's semantics, forward and backward:
//!
//! - [`layer_norm`] and [`rms_norm`] over the trailing dims. candle-nn's
//!   fused `layer_norm` has no gradient (it silently stops it) and computes
//!   the variance as `E[x²] - E[x]²`; here the normalisation is one pass of
//!   our own on the CPU (two-pass variance, as PyTorch) whose backward is
//!   the textbook formula in differentiable candle ops, and composed candle
//!   ops elsewhere.
//! - [`scaled_dot_product_attention`]: `softmax(q kᵀ · scale + mask) v`, as
//!   `torch.nn.functional.scaled_dot_product_attention`, with a causal flag
//!   (top-left aligned), a boolean or additive mask, dropout on the weights
//!   in training and, in inference, a fused softmax (8-lane `exp` on f32
//!   CPU data, candle-nn's elsewhere).
//! - [`multi_head_attention`]: `nn.MultiheadAttention` (batch first) with its
//!   parameter layout: self-attention projects Q, K and V with one matrix
//!   multiply against `in_proj_weight`; cross-attention with two (Q, then K
//!   and V together).
//! - [`sinusoidal_encoding`]: the fixed position encoding of the Transformer.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use crate::layers::{
    LinearParams, MaybeTensor, MultiheadAttentionKvParams, MultiheadAttentionParams,
    QkvAttentionParams, SeparateQkvAttentionParams,
};
use crate::linear::{linear_prepared, prepare_linear, PreparedLinear};
use crate::{param, Fusion, Generator, Result};

fn msg(s: String) -> crate::Error {
    candle_core::Error::Msg(s).into()
}

// ---------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------

/// The last `dims` dims of `x` as one size (the normalised elements per
/// row), or an error naming `op`.
fn trailing(op: &str, x: &Tensor, dims: usize) -> Result<usize> {
    if dims == 0 || dims > x.rank() {
        return Err(msg(format!(
            "{op}: cannot normalise over the last {dims} dims of a tensor of shape {:?}",
            x.dims()
        )));
    }
    Ok(x.dims()[x.rank() - dims..].iter().product())
}

/// `(x - mean) / sqrt(var + eps)` over each row of `n` elements (the biased
/// variance), as one CPU pass per row; the backward is
/// `dx = rstd * (g - mean(g) - x̂ * mean(g * x̂))`.
struct Standardize {
    n: usize,
    eps: f64,
}

/// A row's mean and `1 / sqrt(var + eps)` (the variance biased), two
/// passes accumulated in f64: exact to f32 whatever the row's offset.
fn mean_rstd<T: Copy>(s: &[T], to: impl Fn(T) -> f64, eps: f64) -> (f64, f64) {
    let n = s.len().max(1) as f64;
    let mean = s.iter().map(|&v| to(v)).sum::<f64>() / n;
    let var = s
        .iter()
        .map(|&v| {
            let c = to(v) - mean;
            c * c
        })
        .sum::<f64>()
        / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl candle_core::CustomOp1 for Standardize {
    fn name(&self) -> &'static str {
        "netdsl-standardize"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, eps) = (self.n, self.eps);
        let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("standardize: input must be contiguous".into())
        })?;
        fn rows<T: Copy + Send + Sync>(
            src: &[T],
            n: usize,
            eps: f64,
            to: impl Fn(T) -> f64 + Sync,
            from: impl Fn(f64) -> T + Sync,
            zero: T,
        ) -> Vec<T> {
            let mut dst = vec![zero; src.len()];
            dst.par_chunks_mut(n)
                .zip(src.par_chunks(n))
                .for_each(|(d, s)| {
                    let (mean, rstd) = mean_rstd(s, &to, eps);
                    for (d, s) in d.iter_mut().zip(s) {
                        *d = from((to(*s) - mean) * rstd);
                    }
                });
            dst
        }
        let shape = layout.shape().clone();
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(rows(
                &v[start..end],
                n,
                eps,
                |x| x as f64,
                |x| x as f32,
                0f32,
            )),
            CpuStorage::F64(v) => CpuStorage::F64(rows(&v[start..end], n, eps, |x| x, |x| x, 0f64)),
            other => {
                return Err(candle_core::Error::UnsupportedDTypeForOp(
                    other.dtype(),
                    "layer_norm",
                ))
            }
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let shape = arg.shape().clone();
        let rows = arg.elem_count() / self.n;
        let x = arg.reshape((rows, self.n))?;
        let xhat = res.reshape((rows, self.n))?;
        let g = grad.reshape((rows, self.n))?;
        let mean = x.mean_keepdim(1)?;
        let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(1)?;
        let rstd = var.affine(1.0, self.eps)?.sqrt()?.recip()?;
        let gm = g.mean_keepdim(1)?;
        let gx = g.mul(&xhat)?.mean_keepdim(1)?;
        let dx = g
            .broadcast_sub(&gm)?
            .sub(&xhat.broadcast_mul(&gx)?)?
            .broadcast_mul(&rstd)?;
        Ok(Some(dx.reshape(shape)?))
    }
}

/// `(x - mean) / sqrt(var + eps)` over rows of `n`, composed from candle ops
/// (any device, differentiable).
fn standardize_composed(x: &Tensor, n: usize, eps: f64) -> Result<Tensor> {
    let shape = x.shape().clone();
    let rows = x.elem_count() / n;
    let x2 = x.reshape((rows, n))?;
    let mean = x2.mean_keepdim(1)?;
    let c = x2.broadcast_sub(&mean)?;
    let var = c.sqr()?.mean_keepdim(1)?;
    let y = c.broadcast_div(&var.affine(1.0, eps)?.sqrt()?)?;
    Ok(y.reshape(shape)?)
}

/// Layer normalisation as `torch.nn.LayerNorm`: each sample normalised over
/// its last `dims` dims (the normalised shape) with the biased variance,
/// then scaled by `weight` and shifted by `bias` (both of the normalised
/// shape, either may be absent).
///
/// Differentiable everywhere. On the CPU the normalisation is one pass per
/// row (mean and variance in f64); elsewhere it is composed from candle ops
/// (candle-nn's fused kernel has no gradient).
pub fn layer_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    dims: usize,
    eps: f64,
) -> Result<Tensor> {
    let n = trailing("layer_norm", x, dims)?;
    if let Some(y) = layer_norm_inference(x, weight, bias, n, eps) {
        return y;
    }
    let y = if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(Standardize { n, eps })?
    } else {
        standardize_composed(x, n, eps)?
    };
    affine(y, weight, bias)
}

/// [`layer_norm`] without a gradient on f32 CPU tensors: the normalisation
/// and the affine in one pass per row, split between the runtime's threads
/// (the same values as the two steps: the row's statistics in f64, the
/// affine in f32). `None` elsewhere.
fn layer_norm_inference(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    n: usize,
    eps: f64,
) -> Option<Result<Tensor>> {
    let params = weight.into_iter().chain(bias);
    let fits = |t: &Tensor| {
        !t.track_op() && t.dtype() == DType::F32 && t.device().is_cpu() && t.elem_count() == n
    };
    if x.track_op() || x.dtype() != DType::F32 || !x.device().is_cpu() || n == 0 {
        return None;
    }
    if !params.clone().all(fits) {
        return None;
    }
    let x = match x.contiguous() {
        Ok(x) => x,
        Err(e) => return Some(Err(e.into())),
    };
    let vec = |t: Option<&Tensor>| t.map(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()));
    let (w, b) = match (vec(weight).transpose(), vec(bias).transpose()) {
        (Ok(w), Ok(b)) => (w, b),
        (Err(e), _) | (_, Err(e)) => return Some(Err(e.into())),
    };
    let y = crate::host::with_f32(&x, |src| {
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(n)
            .zip(src.par_chunks(n))
            .for_each(|(d, s)| {
                let (mean, rstd) = mean_rstd(s, |v| v as f64, eps);
                for (j, (d, &v)) in d.iter_mut().zip(s).enumerate() {
                    let z = ((v as f64 - mean) * rstd) as f32;
                    let z = w.as_ref().map_or(z, |w| z * w[j]);
                    *d = b.as_ref().map_or(z, |b| z + b[j]);
                }
            });
        dst
    })?;
    Some(Tensor::from_vec(y, x.shape(), x.device()).map_err(Into::into))
}

fn affine(y: Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = match weight {
        Some(w) => y.broadcast_mul(w)?,
        None => y,
    };
    Ok(match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// RMS normalisation as `torch.nn.RMSNorm`: `x / sqrt(mean(x²) + eps) *
/// weight` over the last `dims` dims. Composed from candle ops,
/// differentiable (candle-nn's fused `rms_norm` has no gradient).
pub fn rms_norm(x: &Tensor, weight: Option<&Tensor>, dims: usize, eps: f64) -> Result<Tensor> {
    let n = trailing("rms_norm", x, dims)?;
    let shape = x.shape().clone();
    let rows = x.elem_count() / n;
    let x2 = x.reshape((rows, n))?;
    let ms = x2.sqr()?.mean_keepdim(1)?;
    let y = x2
        .broadcast_div(&ms.affine(1.0, eps)?.sqrt()?)?
        .reshape(shape)?;
    affine(y, weight, None)
}

// ---------------------------------------------------------------------------
// Scaled dot-product attention
// ---------------------------------------------------------------------------

/// A mask over the attention scores `[.., Tq, Tk]` (broadcast to them).
#[derive(Clone, Copy, Debug)]
pub enum Mask<'a> {
    /// Non-zero where a query may attend to a key (U8, as candle's
    /// comparisons give; PyTorch's SDPA boolean mask). A query with no key
    /// to attend to gets NaN, as in PyTorch.
    Keep(&'a Tensor),
    /// Non-zero where a query may **not** attend to a key: PyTorch's
    /// `nn.MultiheadAttention` boolean `attn_mask` and `key_padding_mask`.
    Block(&'a Tensor),
    /// Added to the scores (`-inf` blocks a pair): a float mask.
    Add(&'a Tensor),
}

/// The options of a scaled dot-product attention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sdpa {
    /// Multiplies `q kᵀ`; `None` is `1 / sqrt(head dim)`.
    pub scale: Option<f64>,
    /// Query `i` attends to keys `0..=i` only (PyTorch's `is_causal`, top
    /// left aligned when `Tq != Tk`).
    pub causal: bool,
    /// Dropout on the attention weights, in training only.
    pub dropout: f64,
}

impl Default for Sdpa {
    fn default() -> Self {
        Self {
            scale: None,
            causal: false,
            dropout: 0.0,
        }
    }
}

/// PyTorch's `key_padding_mask` from lengths: `[B, 1, 1, tk]` (U8), 1 where
/// key `j` is at or past sequence `b`'s length (blocked, for
/// [`Mask::Block`]). Each length must be a whole number in `1..=tk`.
pub fn key_padding_mask(lengths: &Tensor, tk: usize) -> Result<Tensor> {
    let lens = crate::seq::read_lengths(lengths, 1, tk)?
        .map_err(|m| msg(format!("key_padding_mask: {m} (the number of keys)")))?;
    let v: Vec<u8> = lens
        .iter()
        .flat_map(|&l| (0..tk).map(move |j| u8::from(j >= l)))
        .collect();
    Ok(Tensor::from_vec(
        v,
        (lens.len(), 1, 1, tk),
        lengths.device(),
    )?)
}

/// One additive mask over the scores from a user's mask and key lengths:
/// `mask` of an integer dtype blocks (`-inf`) where non-zero (PyTorch's
/// boolean `attn_mask`), of a float dtype is added as it is; `key_lengths`
/// blocks keys at or past each sequence's length (`[B, 1, 1, tk]`). `None`
/// when neither is given.
pub fn attention_mask(
    mask: Option<&Tensor>,
    key_lengths: Option<&Tensor>,
    tk: usize,
) -> Result<Option<Tensor>> {
    let additive = |m: &Tensor| -> Result<Tensor> {
        if m.dtype().is_float() {
            return Ok(m.to_dtype(DType::F32)?);
        }
        let blocked = m.to_dtype(DType::F32)?.ne(0f32)?;
        let inf = Tensor::full(f32::NEG_INFINITY, m.shape(), m.device())?;
        let zero = Tensor::zeros(m.shape(), DType::F32, m.device())?;
        Ok(blocked.where_cond(&inf, &zero)?)
    };
    let user = mask.map(additive).transpose()?;
    let lens = match key_lengths {
        Some(l) => Some(additive(&key_padding_mask(l, tk)?)?),
        None => None,
    };
    Ok(match (user, lens) {
        (Some(a), Some(b)) => Some(a.broadcast_add(&b)?),
        (a, b) => a.or(b),
    })
}

/// [`attention_mask`]'s result as the mask argument of
/// [`multi_head_attention`].
pub fn attention_mask_ref(m: &Option<Tensor>) -> Option<Mask<'_>> {
    m.as_ref().map(Mask::Add)
}

/// The causal mask `[tq, tk]`: 0 on and below the diagonal, `-inf` above.
pub fn causal_mask(
    tq: usize,
    tk: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let v: Vec<f32> = (0..tq)
        .flat_map(|i| (0..tk).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(v, (tq, tk), device)?.to_dtype(dtype)?)
}

/// [`causal_mask`], built once per `(tq, tk, dtype, device)` in the process
/// and kept.
fn cached_causal_mask(
    tq: usize,
    tk: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Key = (usize, usize, DType, String);
    static CACHE: OnceLock<Mutex<HashMap<Key, Tensor>>> = OnceLock::new();
    let key = (tq, tk, dtype, format!("{:?}", device.location()));
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut c = match cache.lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(m) = c.get(&key) {
        return Ok(m.clone());
    }
    let m = causal_mask(tq, tk, dtype, device)?;
    c.insert(key, m.clone());
    Ok(m)
}

/// `softmax(q kᵀ · scale + mask) v` over `q` `[.., Tq, D]`, `k` `[.., Tk,
/// D]`, `v` `[.., Tk, Dv]` (same leading dims), as
/// `torch.nn.functional.scaled_dot_product_attention`. `rng` draws the
/// dropout of the weights when training with `spec.dropout > 0`.
///
/// In inference (`training == false`) the softmax is fused and has no
/// gradient (the runtime's own on f32 CPU data, candle-nn's elsewhere); in
/// training the composed one.
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<Mask<'_>>,
    spec: &Sdpa,
    training: bool,
    rng: Option<&Generator>,
) -> Result<Tensor> {
    let rank = q.rank();
    if rank < 2 || k.rank() != rank || v.rank() != rank {
        return Err(msg(format!(
            "scaled_dot_product_attention: q, k and v must have one rank of at least 2, got {:?}, {:?} and {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    let (tq, d) = (q.dim(rank - 2)?, q.dim(rank - 1)?);
    let (tk, dk) = (k.dim(rank - 2)?, k.dim(rank - 1)?);
    if dk != d
        || v.dim(rank - 2)? != tk
        || q.dims()[..rank - 2] != k.dims()[..rank - 2]
        || k.dims()[..rank - 2] != v.dims()[..rank - 2]
    {
        return Err(msg(format!(
            "scaled_dot_product_attention: q {:?}, k {:?} and v {:?} do not fit ([.., Tq, D], [.., Tk, D], [.., Tk, Dv])",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    let scale = spec.scale.unwrap_or(1.0 / (d as f64).sqrt());
    if !training && mask.is_none() && scale > 0.0 {
        if let Some(out) = fused_attention(q, k, v, scale as f32, spec.causal) {
            return out;
        }
    }
    // In inference the scale goes into the softmax's exponent (one pass
    // less, and no pass of candle's elementwise thread pool), except under
    // an additive mask, which is added to the scaled scores (and a scale
    // that is not positive, which would turn the row's maximum around).
    let late =
        !training && scale > 0.0 && !matches!(mask, Some(Mask::Add(_))) && softmax_rows_runs(q);
    let q = if late {
        q.contiguous()?
    } else {
        q.affine(scale, 0.0)?.contiguous()?
    };
    let k = k.contiguous()?;
    let scores = q.matmul(&k.t()?)?;
    // In inference on the runtime's softmax the causal mask is its rows'
    // lengths (query i attends to keys 0..=i), not a pass adding -inf.
    let causal_rows = late_causal(spec.causal, training, tq);
    let scores = if spec.causal && causal_rows.is_none() {
        scores.broadcast_add(&cached_causal_mask(
            tq,
            tk,
            scores.dtype(),
            scores.device(),
        )?)?
    } else {
        scores
    };
    let scores = match mask {
        None => scores,
        Some(Mask::Add(m)) => scores.broadcast_add(&m.to_dtype(scores.dtype())?)?,
        Some(Mask::Keep(m)) => blocked(&scores, &m.eq(0u8)?)?,
        Some(Mask::Block(m)) => blocked(&scores, &m.ne(0u8)?)?,
    };
    let weights = if training {
        candle_nn::ops::softmax(&scores, D::Minus1)?
    } else {
        let scores = scores.contiguous()?;
        let row_scale = if late { scale as f32 } else { 1.0 };
        match softmax_rows(&scores, row_scale, causal_rows) {
            Some(w) => w?,
            None => {
                let scores = if late {
                    scores.affine(scale, 0.0)?
                } else {
                    scores
                };
                let scores = match causal_rows {
                    Some(_) => scores.broadcast_add(&cached_causal_mask(
                        tq,
                        tk,
                        scores.dtype(),
                        scores.device(),
                    )?)?,
                    None => scores,
                };
                candle_nn::ops::softmax_last_dim(&scores)?
            }
        }
    };
    let weights = match rng {
        Some(rng) if training && spec.dropout > 0.0 => crate::dropout(&weights, spec.dropout, rng)?,
        _ => weights,
    };
    Ok(weights.matmul(&v.contiguous()?)?)
}

/// `Some(tq)` where the causal mask is left to [`softmax_rows`] (inference
/// on the runtime's softmax): row `r` of the scores is query `r % tq`.
fn late_causal(causal: bool, training: bool, tq: usize) -> Option<usize> {
    (causal && !training && tq > 0).then_some(tq)
}

/// Whether [`softmax_rows`] runs on scores made from `q` (f32 on the CPU,
/// no gradient, AVX2 and FMA).
fn softmax_rows_runs(q: &Tensor) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !q.track_op()
            && q.dtype() == DType::F32
            && q.device().is_cpu()
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = q;
        false
    }
}

/// The softmax of `scale * scores` over the last dim, for contiguous f32
/// CPU `scores` without a gradient, rows split between the threads, `exp`
/// 8 lanes at a time with AVX2 and FMA (candle-nn's fused softmax calls the
/// scalar `expf` per element: 8 % of the encoder layer's time). `None`
/// elsewhere. A row with a NaN, or only `-inf` (a fully masked query),
/// takes the exact scalar formula, which gives NaN as PyTorch does. With
/// `causal = Some(tq)`, row `r` is query `i = r % tq` and only its first
/// `i + 1` keys count (PyTorch's top-left aligned causal mask): the rest
/// are 0, or NaN with the row's values when those are NaN.
fn softmax_rows(scores: &Tensor, scale: f32, causal: Option<usize>) -> Option<Result<Tensor>> {
    #[cfg(target_arch = "x86_64")]
    {
        use rayon::prelude::*;
        if scores.track_op()
            || !(std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma"))
        {
            return None;
        }
        let n = *scores.dims().last()?;
        if n == 0 {
            return None;
        }
        // About 4096 floats per task.
        let rows = (4096 / n).max(1);
        let chunk = rows * n;
        crate::host::with_f32(scores, |x| {
            let mut y = vec![0f32; x.len()];
            y.par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk))
                .enumerate()
                .for_each(|(c, (yc, xc))| {
                    for (i, (yr, xr)) in yc.chunks_exact_mut(n).zip(xc.chunks_exact(n)).enumerate()
                    {
                        let len = causal.map_or(n, |tq| ((c * rows + i) % tq + 1).min(n));
                        // SAFETY: the CPU has AVX2 and FMA (checked above).
                        unsafe { softmax_prefix(xr, yr, len, scale) };
                    }
                });
            Ok(Tensor::from_vec(y, scores.shape(), scores.device())?)
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (scores, scale, causal);
        None
    }
}

/// One row of [`softmax_rows`] over its first `len` values; the rest of
/// `y` (keys a causal mask hides) 0, or NaN with a NaN row, as the masked
/// softmax gives.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
unsafe fn softmax_prefix(x: &[f32], y: &mut [f32], len: usize, scale: f32) {
    let len = len.min(x.len()).min(y.len());
    // SAFETY: as the caller promises.
    unsafe { softmax_row_avx2(&x[..len], &mut y[..len], scale) };
    let nan = y[..len].iter().any(|v| v.is_nan());
    y[len..].fill(if nan { f32::NAN } else { 0.0 });
}

/// Inference without a mask but a causal one: per leading index (each
/// batch element's head), the scores `q kᵀ`, their softmax (`scale` in its
/// exponent, the causal mask as the rows' lengths) and `· v` on the packed
/// kernel, a head at a time on each thread, so no `[.., Tq, Tk]` tensor is
/// made: one head's scores and weights (64 KB at T = 128) stay in cache,
/// and the keys and values are packed straight from their rows. `None`
/// where the runtime's softmax does not run (not f32 on the CPU, no AVX2)
/// or a size is 0.
fn fused_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    causal: bool,
) -> Option<Result<Tensor>> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::rnn_kernel::{recurrent_serial, Packed};
        let on_cpu = |t: &Tensor| !t.track_op() && t.dtype() == DType::F32 && t.device().is_cpu();
        if !softmax_rows_runs(q) || !on_cpu(k) || !on_cpu(v) {
            return None;
        }
        let rank = q.rank();
        let (tq, d) = (q.dims()[rank - 2], q.dims()[rank - 1]);
        let (tk, dv) = (k.dims()[rank - 2], v.dims()[rank - 1]);
        if tq == 0 || tk == 0 || d == 0 || dv == 0 {
            return None;
        }
        let heads: usize = q.dims()[..rank - 2].iter().product();
        let run = || -> Result<Tensor> {
            let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
            let mut out = vec![0f32; heads * tq * dv];
            let done = crate::host::with_f32(&q, |qv| {
                crate::host::with_f32(&k, |kv| {
                    crate::host::with_f32(&v, |vv| {
                        out.par_chunks_mut(tq * dv).enumerate().for_each_init(
                            || (vec![0f32; tq * tk], vec![0f32; tq * tk]),
                            |(scores, weights), (h, o)| {
                                let qh = &qv[h * tq * d..][..tq * d];
                                let keys = Packed::new(&kv[h * tk * d..][..tk * d], tk, d);
                                recurrent_serial(scores, false, qh, tq, &keys);
                                for (i, (x, y)) in scores
                                    .chunks_exact(tk)
                                    .zip(weights.chunks_exact_mut(tk))
                                    .enumerate()
                                {
                                    let len = if causal { (i + 1).min(tk) } else { tk };
                                    // SAFETY: the CPU has AVX2 and FMA
                                    // (softmax_rows_runs).
                                    unsafe { softmax_prefix(x, y, len, scale) };
                                }
                                let values =
                                    Packed::from_columns(&vv[h * tk * dv..][..tk * dv], dv, tk);
                                recurrent_serial(o, false, weights, tq, &values);
                            },
                        );
                    })
                })
            })
            .flatten()
            .flatten();
            if done.is_none() {
                return Err(msg(
                    "attention: q, k and v must be f32 on the CPU".to_string()
                ));
            }
            let mut dims = q.dims().to_vec();
            dims[rank - 1] = dv;
            Ok(Tensor::from_vec(out, dims, q.device())?)
        };
        Some(run())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (q, k, v, scale, causal);
        None
    }
}

/// One row of [`softmax_rows`].
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_row_avx2(x: &[f32], y: &mut [f32], scale: f32) {
    use std::arch::x86_64::*;
    let full = x.len() / 8 * 8;
    // The row's maximum and whether it holds a NaN, 8 lanes at a time.
    let (mut m, mut nan) = (f32::NEG_INFINITY, false);
    // SAFETY: chunks of 8 floats of `x`; the CPU has AVX2 (the caller's
    // promise).
    unsafe {
        let mut mx = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut un = _mm256_setzero_ps();
        for i in (0..full).step_by(8) {
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            mx = _mm256_max_ps(mx, v);
            un = _mm256_or_ps(un, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), mx);
        for l in lanes {
            m = m.max(l);
        }
        nan |= _mm256_movemask_ps(un) != 0;
    }
    for &v in &x[full..] {
        m = m.max(v);
        nan |= v.is_nan();
    }
    if nan || m == f32::NEG_INFINITY {
        let e: Vec<f32> = x.iter().map(|v| ((v - m) * scale).exp()).collect();
        let s: f32 = e.iter().sum();
        for (o, v) in y.iter_mut().zip(e) {
            *o = v / s;
        }
        return;
    }
    let mut sum = 0f32;
    // SAFETY (the vector block): chunks of 8 floats of `x` and `y`; the
    // CPU has AVX2 and FMA (the caller's promise).
    unsafe {
        let mv = _mm256_set1_ps(m);
        let lo = _mm256_set1_ps(-87.0);
        let sv = _mm256_set1_ps(scale);
        let mut acc = _mm256_setzero_ps();
        for i in (0..full).step_by(8) {
            let d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), mv), sv);
            // exp of at most 0; below -87 (and -inf) it is 0 here, as in
            // the exact formula up to 1e-38.
            let e = _mm256_and_ps(
                crate::rnn::fast::simd::exp8(d),
                _mm256_cmp_ps::<_CMP_GE_OQ>(d, lo),
            );
            _mm256_storeu_ps(y.as_mut_ptr().add(i), e);
            acc = _mm256_add_ps(acc, e);
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        sum += lanes.iter().sum::<f32>();
    }
    for i in full..x.len() {
        let e = ((x[i] - m) * scale).exp();
        y[i] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for v in y.iter_mut() {
        *v *= inv;
    }
}

/// `scores` with `-inf` where `blocked` (U8, broadcast to the scores) is set.
fn blocked(scores: &Tensor, blocked: &Tensor) -> Result<Tensor> {
    let blocked = blocked.broadcast_as(scores.shape())?;
    let ninf = Tensor::full(f32::NEG_INFINITY, scores.shape(), scores.device())?
        .to_dtype(scores.dtype())?;
    Ok(blocked.where_cond(&ninf, scores)?)
}

// ---------------------------------------------------------------------------
// Multi-head attention
// ---------------------------------------------------------------------------

/// The options of a multi-head attention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MhaSpec {
    /// The number of heads; the model width must be a multiple.
    pub heads: usize,
    /// Queries attend only to earlier keys.
    pub causal: bool,
    /// Dropout on the attention weights, in training only.
    pub dropout: f64,
}

/// Where a multi-head attention keeps its projections prepared for
/// inference ([`crate::prepare_linear`]: weights packed once for the matrix
/// kernel): the fusion cache of the network or block holding it, and the
/// first of its four slots (the query's projection or Q, K and V stacked;
/// the key's or K and V stacked; the value's; the output projection). The
/// cached weights are recomputed when any of the attention's parameters is
/// replaced.
#[derive(Clone, Copy)]
pub struct MhaCache<'a> {
    pub fusion: &'a Fusion,
    pub slot: usize,
}

/// One projection's weights: prepared and cached (inference, fusion on) or
/// as `param` gives them.
enum Weights {
    Prepared(PreparedLinear),
    Plain(Projection),
}

impl Weights {
    fn dims(&self) -> &[usize] {
        match self {
            Weights::Prepared(p) => p.weight().dims(),
            Weights::Plain((w, _)) => w.dims(),
        }
    }

    /// `x W^T + b` for `x` `[.., in]` ([`crate::linear`]).
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Weights::Prepared(p) => linear_prepared(x, p, crate::conv::Epilogue::None),
            Weights::Plain((w, b)) => crate::linear(x, w, b.as_ref()),
        }
    }
}

/// The projections of one attention call: `make` gives a projection's
/// weights; with a cache, only when slot `k`'s are not cached yet.
struct Projections<'a, P> {
    p: &'a P,
    cache: Option<MhaCache<'a>>,
}

impl<P: AttentionParams> Projections<'_, P> {
    fn weights(&self, k: usize, make: impl FnOnce(&P) -> Result<Projection>) -> Result<Weights> {
        match self.cache {
            Some(c) => {
                let sources = self.p.tensors();
                let prepared = c.fusion.get_linear(c.slot + k, &sources, || {
                    let (w, b) = make(self.p)?;
                    Ok(prepare_linear(&w, b.as_ref()))
                })?;
                Ok(Weights::Prepared(prepared))
            }
            None => Ok(Weights::Plain(make(self.p)?)),
        }
    }
}

/// A projection's weight `[out, in]` and its bias.
pub type Projection = (Tensor, Option<Tensor>);

/// The parameters of a multi-head attention in any of its layouts: the
/// query, key and value projections as one weight `[3E, E]` (Q, K, V
/// stacked) with its bias, and the output projection.
pub trait AttentionParams {
    /// `(weight [3E, E], bias [3E])`, as `param` gives them for `training`.
    fn in_proj(&self, training: bool) -> Result<(Tensor, Option<Tensor>)>;
    /// `(weight [E, E], bias [E])`.
    fn out_proj(&self, training: bool) -> (Tensor, Option<Tensor>);
    /// The query, key and value projections apart, `(weight, bias)` each,
    /// for layouts that keep them apart (the key and value weights may then
    /// read another width than the query's, PyTorch's `kdim`/`vdim`).
    fn separate(&self, _training: bool) -> Option<Result<[Projection; 3]>> {
        None
    }
    /// Every parameter tensor, as held: what prepared projections are
    /// cached against.
    fn tensors(&self) -> Vec<&Tensor>;
}

fn linear_tensors<B: MaybeTensor>(l: &LinearParams<B>) -> impl Iterator<Item = &Tensor> {
    std::iter::once(&l.weight).chain(l.bias.tensor())
}

fn linear_params<B: MaybeTensor>(l: &LinearParams<B>, training: bool) -> (Tensor, Option<Tensor>) {
    (
        param(&l.weight, training),
        l.bias.tensor().map(|t| param(t, training)),
    )
}

/// PyTorch's `nn.MultiheadAttention`: `in_proj_weight` is already `[3E, E]`.
impl<B: MaybeTensor> AttentionParams for MultiheadAttentionParams<B> {
    fn in_proj(&self, training: bool) -> Result<(Tensor, Option<Tensor>)> {
        Ok((
            param(&self.in_proj_weight, training),
            self.in_proj_bias.tensor().map(|t| param(t, training)),
        ))
    }

    fn out_proj(&self, training: bool) -> (Tensor, Option<Tensor>) {
        linear_params(&self.out_proj, training)
    }

    fn tensors(&self) -> Vec<&Tensor> {
        std::iter::once(&self.in_proj_weight)
            .chain(self.in_proj_bias.tensor())
            .chain(linear_tensors(&self.out_proj))
            .collect()
    }
}

/// timm: `qkv` is `[3E, E]`, no copy.
impl<B: MaybeTensor> AttentionParams for QkvAttentionParams<B> {
    fn in_proj(&self, training: bool) -> Result<(Tensor, Option<Tensor>)> {
        Ok(linear_params(&self.qkv, training))
    }

    fn out_proj(&self, training: bool) -> (Tensor, Option<Tensor>) {
        linear_params(&self.proj, training)
    }

    fn tensors(&self) -> Vec<&Tensor> {
        linear_tensors(&self.qkv)
            .chain(linear_tensors(&self.proj))
            .collect()
    }
}

/// Hugging Face: the three `[E, E]` weights stacked into `[3E, E]` (one
/// copy of `3E²` values per forward, differentiable) so that
/// self-attention still projects with one matrix multiply.
impl<B: MaybeTensor> AttentionParams for SeparateQkvAttentionParams<B> {
    fn in_proj(&self, training: bool) -> Result<(Tensor, Option<Tensor>)> {
        let (wq, bq) = linear_params(&self.q_proj, training);
        let (wk, bk) = linear_params(&self.k_proj, training);
        let (wv, bv) = linear_params(&self.v_proj, training);
        let w = Tensor::cat(&[&wq, &wk, &wv], 0)?;
        let b =
            match (bq, bk, bv) {
                (Some(q), Some(k), Some(v)) => Some(Tensor::cat(&[&q, &k, &v], 0)?),
                (None, None, None) => None,
                _ => return Err(msg(
                    "multi_head_attention: q_proj, k_proj and v_proj must all have a bias or none"
                        .to_string(),
                )),
            };
        Ok((w, b))
    }

    fn out_proj(&self, training: bool) -> (Tensor, Option<Tensor>) {
        linear_params(&self.out_proj, training)
    }

    fn separate(&self, training: bool) -> Option<Result<[Projection; 3]>> {
        Some(Ok([
            linear_params(&self.q_proj, training),
            linear_params(&self.k_proj, training),
            linear_params(&self.v_proj, training),
        ]))
    }

    fn tensors(&self) -> Vec<&Tensor> {
        [&self.q_proj, &self.k_proj, &self.v_proj, &self.out_proj]
            .into_iter()
            .flat_map(linear_tensors)
            .collect()
    }
}

/// PyTorch with `kdim`/`vdim`: three weights, one stacked bias `[3E]`.
impl<B: MaybeTensor> AttentionParams for MultiheadAttentionKvParams<B> {
    /// Stacked for self-attention, where every width is the query's.
    fn in_proj(&self, training: bool) -> Result<(Tensor, Option<Tensor>)> {
        let ws = [
            &self.q_proj_weight,
            &self.k_proj_weight,
            &self.v_proj_weight,
        ];
        let w = Tensor::cat(&ws.map(|w| param(w, training)), 0)?;
        Ok((w, self.in_proj_bias.tensor().map(|t| param(t, training))))
    }

    fn out_proj(&self, training: bool) -> (Tensor, Option<Tensor>) {
        linear_params(&self.out_proj, training)
    }

    fn separate(&self, training: bool) -> Option<Result<[Projection; 3]>> {
        let e = match self.q_proj_weight.dim(0) {
            Ok(e) => e,
            Err(err) => return Some(Err(err.into())),
        };
        let bias = |i: usize| -> Result<Option<Tensor>> {
            match self.in_proj_bias.tensor() {
                Some(b) => Ok(Some(param(b, training).narrow(0, i * e, e)?)),
                None => Ok(None),
            }
        };
        let parts = (|| {
            Ok([
                (param(&self.q_proj_weight, training), bias(0)?),
                (param(&self.k_proj_weight, training), bias(1)?),
                (param(&self.v_proj_weight, training), bias(2)?),
            ])
        })();
        Some(parts)
    }

    fn tensors(&self) -> Vec<&Tensor> {
        [
            &self.q_proj_weight,
            &self.k_proj_weight,
            &self.v_proj_weight,
        ]
        .into_iter()
        .chain(self.in_proj_bias.tensor())
        .chain(linear_tensors(&self.out_proj))
        .collect()
    }
}

/// `[B, T, heads * D]` -> `[B, heads, T, D]`, contiguous.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, e) = x.dims3()?;
    Ok(x.reshape((b, t, heads, e / heads))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// `nn.MultiheadAttention(E, heads, batch_first=True)` on `query` `[B, Tq,
/// E]`, attending over `memory` `[B, Tk, E]` (`None`: self-attention,
/// `memory = query`). Self-attention projects Q, K and V with one matrix
/// multiply against `in_proj_weight` `[3E, E]`, then splits the heads with
/// one copy; cross-attention multiplies the query by its third of the
/// weight and the memory by the other two in one multiply. Returns the
/// output `[B, Tq, E]` (PyTorch's first result; the averaged weights are
/// not computed). `p` is any [`AttentionParams`] layout: PyTorch's
/// [`MultiheadAttentionParams`], timm's [`QkvAttentionParams`] or Hugging
/// Face's [`SeparateQkvAttentionParams`]. With `cache` (inference), the
/// projections' weights are prepared once and kept there ([`MhaCache`]).
#[allow(clippy::too_many_arguments)]
pub fn multi_head_attention<P: AttentionParams>(
    query: &Tensor,
    memory: Option<&Tensor>,
    p: &P,
    spec: &MhaSpec,
    mask: Option<Mask<'_>>,
    training: bool,
    rng: Option<&Generator>,
    cache: Option<MhaCache<'_>>,
) -> Result<Tensor> {
    let (b, tq, e) = query.dims3()?;
    let heads = spec.heads;
    if heads == 0 || e % heads != 0 {
        return Err(msg(format!(
            "multi_head_attention: the width {e} is not a multiple of {heads} heads"
        )));
    }
    let proj = Projections { p, cache };
    // Cross-attention with the projections apart (PyTorch's kdim/vdim, or
    // Hugging Face's q/k/v_proj): the memory may have its own width.
    if let (Some(mem), true) = (memory, p.separate(training).is_some()) {
        let part = |i: usize| {
            proj.weights(i, |p| match p.separate(training) {
                Some(parts) => Ok(parts?[i].clone()),
                None => Err(msg(
                    "multi_head_attention: the projections are not apart".into()
                )),
            })
        };
        let (wq, wk, wv) = (part(0)?, part(1)?, part(2)?);
        let (bm, _, em) = mem.dims3()?;
        if bm != b || wk.dims() != [e, em] || wv.dims() != [e, em] || wq.dims() != [e, e] {
            return Err(msg(format!(
                "multi_head_attention: the query {:?} and the memory {:?} do not fit the projections \
                 (query {:?}, key {:?}, value {:?})",
                query.dims(),
                mem.dims(),
                wq.dims(),
                wk.dims(),
                wv.dims()
            )));
        }
        let q = split_heads(&wq.apply(query)?, heads)?;
        let k = split_heads(&wk.apply(mem)?, heads)?;
        let v = split_heads(&wv.apply(mem)?, heads)?;
        return attend(&proj, (q, k, v), (b, tq, e), spec, mask, training, rng);
    }
    let stacked = |p: &P| -> Result<Projection> {
        let (w, bias) = p.in_proj(training)?;
        if w.dims() != [3 * e, e] {
            return Err(msg(format!(
                "multi_head_attention: the stacked Q, K, V projection (in_proj_weight) is {:?}, the input's width {e} needs [{}, {e}]",
                w.dims(),
                3 * e
            )));
        }
        Ok((w, bias))
    };
    let (q, k, v) = match memory {
        None => {
            // One multiply, then one copy into [3, B, heads, T, D].
            let qkv = proj.weights(0, stacked)?.apply(query)?;
            let qkv = qkv
                .reshape((b, tq, 3, heads, e / heads))?
                .permute((2, 0, 3, 1, 4))?
                .contiguous()?;
            (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?)
        }
        Some(mem) => {
            let (bm, _tk, em) = mem.dims3()?;
            if bm != b || em != e {
                return Err(msg(format!(
                    "multi_head_attention: the query {:?} and the memory {:?} differ in batch or width",
                    query.dims(),
                    mem.dims()
                )));
            }
            // Rows 0..E of the stack project the query, E..3E the memory.
            let rows = |start: usize, len: usize| {
                move |p: &P| -> Result<Projection> {
                    let (w, bias) = stacked(p)?;
                    Ok((
                        w.narrow(0, start, len)?,
                        bias.map(|t| t.narrow(0, start, len)).transpose()?,
                    ))
                }
            };
            let q = split_heads(&proj.weights(0, rows(0, e))?.apply(query)?, heads)?;
            let kv = proj.weights(1, rows(e, 2 * e))?.apply(mem)?;
            let (_, tk, _) = kv.dims3()?;
            let kv = kv
                .reshape((b, tk, 2, heads, e / heads))?
                .permute((2, 0, 3, 1, 4))?
                .contiguous()?;
            (q, kv.get(0)?, kv.get(1)?)
        }
    };
    attend(&proj, (q, k, v), (b, tq, e), spec, mask, training, rng)
}

/// The heads' scaled dot-product attention over projected `[B, heads, T,
/// D]` queries, keys and values, merged back to `[B, Tq, E]` and projected
/// out.
#[allow(clippy::too_many_arguments)]
fn attend<P: AttentionParams>(
    proj: &Projections<'_, P>,
    (q, k, v): (Tensor, Tensor, Tensor),
    (b, tq, e): (usize, usize, usize),
    spec: &MhaSpec,
    mask: Option<Mask<'_>>,
    training: bool,
    rng: Option<&Generator>,
) -> Result<Tensor> {
    let sdpa = Sdpa {
        scale: None,
        causal: spec.causal,
        dropout: spec.dropout,
    };
    let o = scaled_dot_product_attention(&q, &k, &v, mask, &sdpa, training, rng)?;
    // [B, heads, Tq, D] -> [B, Tq, E]
    let o = o.transpose(1, 2)?.reshape((b, tq, e))?;
    proj.weights(3, |p| Ok(p.out_proj(training)))?.apply(&o)
}

// ---------------------------------------------------------------------------
// Position encodings
// ---------------------------------------------------------------------------

/// The Transformer's sinusoidal position encoding `[len, dim]`:
/// `PE[p, 2i] = sin(p / 10000^(2i / dim))`, `PE[p, 2i + 1] = cos(..)`,
/// computed in f64 and rounded once.
pub fn sinusoidal_encoding(
    len: usize,
    dim: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut v = vec![0f64; len * dim];
    for p in 0..len {
        for j in 0..dim {
            let i2 = (j - j % 2) as f64;
            let angle = p as f64 / 10000f64.powf(i2 / dim as f64);
            v[p * dim + j] = if j % 2 == 0 { angle.sin() } else { angle.cos() };
        }
    }
    Ok(Tensor::from_vec(v, (len, dim), device)?.to_dtype(dtype)?)
}

// ---------------------------------------------------------------------------
// Vision transformer
// ---------------------------------------------------------------------------

/// ViT's patch embedding: `Conv2d(C, E, kernel = patch, stride = patch)`
/// on `[B, C, H, W]`, flattened and transposed to `[B, (H/P)(W/P), E]`, as
/// torchvision's `conv_proj` then `reshape` and `permute`. The patches do not
/// overlap, so it is one copy (gathering each patch's `C·P·P` values) and
/// one matrix multiply with the weight as `[E, C·P·P]`; differentiable.
pub fn patch_embed<B: MaybeTensor>(
    x: &Tensor,
    conv: &crate::layers::Conv2dParams<B>,
    patch: usize,
    training: bool,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if patch == 0 || h % patch != 0 || w % patch != 0 {
        return Err(msg(format!(
            "patch_embed: a {h}x{w} image does not split into {patch}x{patch} patches"
        )));
    }
    let weight = param(&conv.weight, training);
    let e = weight.dim(0)?;
    if weight.dims() != [e, c, patch, patch] {
        return Err(msg(format!(
            "patch_embed: the weight is {:?}, a {c}-channel input with {patch}x{patch} patches needs [{e}, {c}, {patch}, {patch}]",
            weight.dims()
        )));
    }
    let (gh, gw) = (h / patch, w / patch);
    let patches = x
        .reshape((b, c, gh, patch, gw, patch))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?
        .reshape((b * gh * gw, c * patch * patch))?;
    let y = patches.matmul(&weight.reshape((e, c * patch * patch))?.t()?)?;
    let y = match conv.bias.tensor() {
        Some(bias) => y.broadcast_add(&param(bias, training))?,
        None => y,
    };
    Ok(y.reshape((b, gh * gw, e))?)
}

/// `[B, T, E]` with a learned `token` `[1, 1, E]` put first: `[B, T + 1,
/// E]` (torchvision's class token: `cat([token.expand(B, -1, -1), x], 1)`).
pub fn prepend_token(x: &Tensor, token: &Tensor) -> Result<Tensor> {
    let (b, _t, e) = x.dims3()?;
    if token.dims() != [1, 1, e] {
        return Err(msg(format!(
            "prepend_token: the token is {:?}, the input {:?} needs [1, 1, {e}]",
            token.dims(),
            x.dims()
        )));
    }
    let token = token.broadcast_as((b, 1, e))?.to_dtype(x.dtype())?;
    Ok(Tensor::cat(&[&token, x], 1)?)
}

/// `x` `[B, T, E]` plus the sinusoidal encoding `[T, E]`, broadcast over the
/// batch. The encoding is computed once per `(T, E, dtype, device)` in the
/// process and kept, so a forward never recomputes it.
pub fn add_sinusoidal(x: &Tensor) -> Result<Tensor> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Key = (usize, usize, DType, String);
    static CACHE: OnceLock<Mutex<HashMap<Key, Tensor>>> = OnceLock::new();
    let (_b, t, e) = x.dims3()?;
    let key = (t, e, x.dtype(), format!("{:?}", x.device().location()));
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let cached = match cache.lock() {
        Ok(c) => c.get(&key).cloned(),
        Err(poisoned) => poisoned.into_inner().get(&key).cloned(),
    };
    let pe = match cached {
        Some(pe) => pe,
        None => {
            let pe = sinusoidal_encoding(t, e, x.dtype(), x.device())?;
            match cache.lock() {
                Ok(mut c) => c.insert(key, pe.clone()),
                Err(poisoned) => poisoned.into_inner().insert(key, pe.clone()),
            };
            pe
        }
    };
    Ok(x.broadcast_add(&pe)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    /// The vectorised softmax equals candle-nn's within 1e-6 at row lengths
    /// around the vector width, with masked (`-inf`) entries, a fully
    /// masked row (NaN, as candle-nn and PyTorch give) and a NaN score.
    #[test]
    fn vectorised_softmax_equals_candle_nn() {
        let mut state = 7u64;
        for n in [1usize, 7, 8, 9, 31, 128] {
            let rows = 37;
            let mut v: Vec<f32> = (0..rows * n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) % 2001) as f32 / 50.0 - 20.0
                })
                .collect();
            for (i, x) in v.iter_mut().enumerate() {
                if i % 5 == 3 {
                    *x = f32::NEG_INFINITY;
                }
            }
            // Row 2 fully masked, row 4 holds a NaN.
            v[2 * n..3 * n].fill(f32::NEG_INFINITY);
            v[4 * n] = f32::NAN;
            let x = Tensor::from_vec(v, (rows, n), &Device::Cpu).unwrap();
            // Unscaled, and the scale of 64-wide heads in the exponent;
            // causal over 3 queries (rows 0, 3, 6.. are query 0), so that
            // the fully masked row and the NaN row meet the causal mask.
            for (scale, causal) in [(1.0f32, None), (0.125, None), (0.125, Some(3))] {
                let Some(got) = super::softmax_rows(&x, scale, causal) else {
                    return;
                };
                let got: Vec<f32> = got.unwrap().flatten_all().unwrap().to_vec1().unwrap();
                let scaled = x.affine(scale as f64, 0.0).unwrap();
                let scaled = match causal {
                    Some(tq) => {
                        let m: Vec<f32> = (0..rows * n)
                            .map(|e| {
                                if e % n > (e / n) % tq {
                                    f32::NEG_INFINITY
                                } else {
                                    0.0
                                }
                            })
                            .collect();
                        let m = Tensor::from_vec(m, (rows, n), &Device::Cpu).unwrap();
                        (scaled + m).unwrap()
                    }
                    None => scaled,
                };
                let want: Vec<f32> = candle_nn::ops::softmax_last_dim(&scaled)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6,
                        "n {n}, scale {scale}, element {i}: {a} against {b}"
                    );
                }
            }
        }
    }
}
