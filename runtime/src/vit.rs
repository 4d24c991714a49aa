//! What the vision transformer needs beside attention: stochastic depth
//! ([`drop_path`], timm's `DropPath`) and the resizing of a learned position
//! embedding to another image size ([`interpolate_pos_embedding`] and
//! [`interpolate_embeddings`], torchvision's `interpolate_embeddings`).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::{Generator, Result};

fn msg(s: String) -> crate::Error {
    candle_core::Error::Msg(s).into()
}

// ---------------------------------------------------------------------------
// DropPath
// ---------------------------------------------------------------------------

/// Stochastic depth (Huang et al., 2016) as timm's `drop_path` with
/// `scale_by_keep = True`: in training, each sample of the batch (dim 0) is
/// zeroed whole with probability `p` and the others are scaled by
/// `1 / (1 - p)`; in inference, or with `p = 0`, the identity. With `p = 1`
/// every sample is zeroed (timm does not scale then). The draws come from
/// the network's seeded generator.
pub fn drop_path(x: &Tensor, p: f64, training: bool, rng: &Generator) -> Result<Tensor> {
    if !training || p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        return Ok(x.zeros_like()?);
    }
    if x.rank() == 0 {
        return Err(msg(
            "drop_path: the input needs a batch dim, got a scalar".to_string()
        ));
    }
    let b = x.dim(0)?;
    let keep = 1.0 - p;
    let mask = crate::dropout::keep_mask(rng.uniform(b), keep);
    let mut shape = vec![1usize; x.rank()];
    shape[0] = b;
    let mask = Tensor::from_vec(mask, shape, &Device::Cpu)?
        .to_dtype(x.dtype())?
        .to_device(x.device())?;
    Ok(x.broadcast_mul(&mask)?)
}

// ---------------------------------------------------------------------------
// Position-embedding interpolation
// ---------------------------------------------------------------------------

/// PyTorch's cubic convolution kernel with `A = -0.75`
/// (`upsample_bicubic2d`): the four weights of the samples at
/// `floor(x) - 1 ..= floor(x) + 2` for the fraction `t = x - floor(x)`.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// The `[n_out, n_in]` matrix of bicubic resampling with
/// `align_corners = True` along one axis: output `i` samples the input at
/// `i * (n_in - 1) / (n_out - 1)`, with the indices outside the input
/// clamped to its edge, as PyTorch's `interpolate(mode = "bicubic",
/// align_corners = True)`.
fn bicubic_matrix(n_in: usize, n_out: usize) -> Vec<f64> {
    let mut m = vec![0f64; n_out * n_in];
    let scale = if n_out > 1 {
        // PyTorch computes the scale in the accumulation type (f32 for f32
        // inputs).
        ((n_in as f32 - 1.0) / (n_out as f32 - 1.0)) as f64
    } else {
        0.0
    };
    for i in 0..n_out {
        // PyTorch's `guard_index_and_lambda`: the index at most the last.
        let x = (scale as f32 * i as f32) as f64;
        let x0 = x.floor().min(n_in as f64 - 1.0);
        let w = cubic_weights((x - x0).clamp(0.0, 1.0));
        for (k, wk) in w.iter().enumerate() {
            let j = (x0 as i64 - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
            m[i * n_in + j] += wk;
        }
    }
    m
}

/// A learned ViT position embedding `[1, 1 + n·n, E]` (a class token's
/// position, then an `n x n` grid of patches in row-major order) resized to a
/// `grid.0 x grid.1` grid of patches: `[1, 1 + grid.0·grid.1, E]`. The class
/// token's position is kept; the grid is resampled bicubically with
/// `align_corners = True`, as torchvision's `interpolate_embeddings`
/// (which supports square grids only; here the two sides may differ). The
/// arithmetic is in f64 on the CPU, the result in `pos`'s dtype and device.
pub fn interpolate_pos_embedding(pos: &Tensor, grid: (usize, usize)) -> Result<Tensor> {
    let (one, t, e) = pos.dims3().map_err(|_| {
        msg(format!(
            "interpolate_pos_embedding: the embedding must be [1, 1 + n*n, E], got {:?}",
            pos.dims()
        ))
    })?;
    let n = (t.saturating_sub(1) as f64).sqrt().round() as usize;
    if one != 1 || t < 2 || n * n != t - 1 {
        return Err(msg(format!(
            "interpolate_pos_embedding: the embedding must be [1, 1 + n*n, E] (a class token and a square grid), got {:?}",
            pos.dims()
        )));
    }
    let (gh, gw) = grid;
    if gh == 0 || gw == 0 {
        return Err(msg(format!(
            "interpolate_pos_embedding: the new grid {gh}x{gw} is empty"
        )));
    }
    if (gh, gw) == (n, n) {
        return Ok(pos.clone());
    }
    let v: Vec<f64> = pos
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1()?;
    let (token, img) = v.split_at(e);
    let (mh, mw) = (bicubic_matrix(n, gh), bicubic_matrix(n, gw));
    // Along the rows: tmp[i, b, :] = sum_a mh[i, a] img[a, b, :].
    let mut tmp = vec![0f64; gh * n * e];
    for i in 0..gh {
        for a in 0..n {
            let w = mh[i * n + a];
            if w == 0.0 {
                continue;
            }
            for b in 0..n {
                let src = &img[(a * n + b) * e..(a * n + b + 1) * e];
                let dst = &mut tmp[(i * n + b) * e..(i * n + b + 1) * e];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += w * s;
                }
            }
        }
    }
    // Along the columns: out[i, j, :] = sum_b mw[j, b] tmp[i, b, :].
    let mut out = Vec::with_capacity((1 + gh * gw) * e);
    out.extend_from_slice(token);
    out.resize((1 + gh * gw) * e, 0.0);
    for i in 0..gh {
        for j in 0..gw {
            let o = (1 + i * gw + j) * e;
            for b in 0..n {
                let w = mw[j * n + b];
                if w == 0.0 {
                    continue;
                }
                let src = &tmp[(i * n + b) * e..(i * n + b + 1) * e];
                for (d, s) in out[o..o + e].iter_mut().zip(src) {
                    *d += w * s;
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (1, 1 + gh * gw, e), &Device::Cpu)?
        .to_dtype(pos.dtype())?
        .to_device(pos.device())?)
}

/// torchvision's `interpolate_embeddings` on a state_dict in memory: the
/// position embedding under `key` (`"encoder.pos_embedding"` in
/// torchvision's ViTs) is resized to a `grid.0 x grid.1` grid of patches
/// (`image_size / patch_size` per side) with [`interpolate_pos_embedding`].
/// Returns whether it changed (`false` when it already has that grid). So a
/// checkpoint trained at 224 loads into a network declared at another
/// image size:
///
/// ```no_run
/// # use std::collections::HashMap;
/// # use netdsl_runtime::candle::{Device, Tensor};
/// let mut state: HashMap<String, Tensor> =
///     netdsl_runtime::candle::safetensors::load("vit_b_16.safetensors", &Device::Cpu)?;
/// // A network declared at 384 x 384 with 16 x 16 patches: a 24 x 24 grid.
/// netdsl_runtime::interpolate_embeddings(&mut state, "encoder.pos_embedding", (24, 24))?;
/// # Ok::<(), netdsl_runtime::Error>(())
/// ```
pub fn interpolate_embeddings(
    state: &mut HashMap<String, Tensor>,
    key: &str,
    grid: (usize, usize),
) -> Result<bool> {
    let Some(pos) = state.get(key) else {
        return Err(msg(format!(
            "interpolate_embeddings: the state_dict has no `{key}`"
        )));
    };
    let old = pos.dims().to_vec();
    let new = interpolate_pos_embedding(pos, grid)?;
    let changed = new.dims() != old.as_slice();
    state.insert(key.to_string(), new);
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate() {
        for t in [0.0, 0.25, 0.5, 0.9] {
            let w = cubic_weights(t);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn align_corners_keeps_the_corners_and_a_linear_ramp() {
        // Cubic convolution reproduces a linear ramp away from the edges,
        // and align_corners maps the end points onto each other.
        let m = bicubic_matrix(4, 7);
        let ramp = [0.0, 1.0, 2.0, 3.0];
        let out: Vec<f64> = (0..7)
            .map(|i| (0..4).map(|j| m[i * 4 + j] * ramp[j]).sum())
            .collect();
        assert!((out[0] - 0.0).abs() < 1e-12);
        assert!((out[6] - 3.0).abs() < 1e-12);
        assert!((out[3] - 1.5).abs() < 1e-12, "{out:?}");
    }

    #[test]
    fn the_class_token_is_kept_and_the_same_grid_is_unchanged() -> Result<()> {
        let v: Vec<f32> = (0..(1 + 9) * 2).map(|i| i as f32 * 0.5).collect();
        let pos = Tensor::from_vec(v, (1, 10, 2), &Device::Cpu)?;
        let same = interpolate_pos_embedding(&pos, (3, 3))?;
        assert_eq!(same.to_vec3::<f32>()?, pos.to_vec3::<f32>()?);
        let big = interpolate_pos_embedding(&pos, (5, 4))?;
        assert_eq!(big.dims(), [1, 21, 2]);
        let rows = big.squeeze(0)?.to_vec2::<f32>()?;
        assert_eq!(rows[0], vec![0.0, 0.5]);
        // The grid's corners land on the old corners.
        assert_eq!(rows[1], vec![1.0, 1.5]);
        assert_eq!(rows[20], vec![9.0, 9.5]);
        assert!(interpolate_pos_embedding(&pos.narrow(1, 0, 9)?, (2, 2)).is_err());
        Ok(())
    }

    #[test]
    fn drop_path_is_the_identity_in_eval() -> Result<()> {
        let x = Tensor::ones((4, 3), DType::F32, &Device::Cpu)?;
        let rng = Generator::seeded(0);
        let y = drop_path(&x, 0.5, false, &rng)?;
        assert_eq!(y.to_vec2::<f32>()?, x.to_vec2::<f32>()?);
        let z = drop_path(&x, 1.0, true, &rng)?;
        assert_eq!(z.sum_all()?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }
}
