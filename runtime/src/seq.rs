//! Sequence ops over `[B, C, T]` and `[B, T]` tensors: 1-D convolution
//! (causal included), 1-D pooling, and token embedding.
//!
//! The 1-D convolution and pooling run as their 2-D counterparts with a
//! height of one (`[B, C, 1, T]`, kernel `(1, k)`): the runtime's own
//! convolution has PyTorch's semantics and correct gradients at any batch
//! size, which candle's `conv1d` lacks (its weight gradient is wrong for a
//! batch of more than one), and the 2-D pools are exact and differentiable.
//!
//! [`embedding`] looks up rows of a `[vocab, dim]` table for integer ids,
//! refusing an id outside the table with the position it sits at, and keeps
//! the padding row's gradient at zero as PyTorch's `padding_idx` does.

use candle_core::{DType, Tensor};

use crate::conv::{conv2d, Conv2dSpec, Epilogue};
use crate::pool::{adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d, Pool2d};
use crate::{Error, Result};

/// The options of a PyTorch `Conv1d`, with a padding per side (a causal
/// convolution pads `dilation * (k - 1)` on the left only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dSpec {
    /// Step between windows; at least 1.
    pub stride: usize,
    /// Zero padding `(left, right)`.
    pub padding: (usize, usize),
    /// Spacing between kernel taps; at least 1.
    pub dilation: usize,
    /// Channel groups; divides `C_in` and `C_out`.
    pub groups: usize,
}

impl Default for Conv1dSpec {
    fn default() -> Self {
        Conv1dSpec {
            stride: 1,
            padding: (0, 0),
            dilation: 1,
            groups: 1,
        }
    }
}

impl Conv1dSpec {
    /// The 2-D convolution with height one that computes this one.
    pub fn as_2d(&self) -> Conv2dSpec {
        Conv2dSpec {
            stride: (1, self.stride),
            padding: ((0, 0), self.padding),
            dilation: (1, self.dilation),
            groups: self.groups,
        }
    }

    /// PyTorch's output length
    /// `(t + left + right - dilation * (k - 1) - 1) / stride + 1`; `None`
    /// when the dilated kernel does not fit the padded input.
    pub fn out_len(&self, t: usize, k: usize) -> Option<usize> {
        self.as_2d().out_size(1, t, 1, k).map(|(_, w)| w)
    }
}

fn rank(x: &Tensor, want: usize, what: &str, layout: &str) -> Result<()> {
    if x.rank() != want {
        return Err(candle_core::Error::Msg(format!(
            "{what}: expected a rank-{want} {layout} tensor, got shape {:?}",
            x.dims()
        ))
        .into());
    }
    Ok(())
}

/// `y = act(conv1d(x, w) + bias[c])`: x `[B, C_in, T]`, w
/// `[C_out, C_in / groups, k]` (PyTorch's layout), bias `[C_out]`; y
/// `[B, C_out, T_out]` with `T_out` = [`Conv1dSpec::out_len`].
/// Differentiable in `x`, `w` and `bias`.
pub fn conv1d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &Conv1dSpec,
    act: Epilogue,
) -> Result<Tensor> {
    rank(x, 3, "conv1d", "[B, C, T]")?;
    rank(w, 3, "conv1d weight", "[C_out, C_in / groups, k]")?;
    let y = conv2d(&x.unsqueeze(2)?, &w.unsqueeze(2)?, bias, &spec.as_2d(), act)?;
    Ok(y.squeeze(2)?)
}

/// The options of a PyTorch `MaxPool1d` / `AvgPool1d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool1d {
    /// Window size; at least 1.
    pub kernel: usize,
    /// Step between windows; at least 1.
    pub stride: usize,
    /// Implicit padding on both sides, at most `kernel / 2`.
    pub padding: usize,
    /// Spacing between window elements (max pooling only).
    pub dilation: usize,
    /// Round the output length up (PyTorch's `ceil_mode`).
    pub ceil_mode: bool,
    /// Average pooling: count padded positions in the divisor.
    pub count_include_pad: bool,
}

impl Pool1d {
    fn as_2d(&self) -> Pool2d {
        Pool2d {
            kernel: (1, self.kernel),
            stride: (1, self.stride),
            padding: (0, self.padding),
            dilation: (1, self.dilation),
            ceil_mode: self.ceil_mode,
            count_include_pad: self.count_include_pad,
        }
    }

    /// PyTorch's output length for an input of length `t`; `None` when
    /// there is none.
    pub fn out_len(&self, t: usize) -> Option<usize> {
        self.as_2d().out_size(1, t).map(|(_, w)| w)
    }
}

/// `MaxPool1d` over the last axis of `[B, C, T]`.
pub fn max_pool1d(x: &Tensor, p: &Pool1d) -> Result<Tensor> {
    rank(x, 3, "max_pool1d", "[B, C, T]")?;
    Ok(max_pool2d(&x.unsqueeze(2)?, &p.as_2d())?.squeeze(2)?)
}

/// `AvgPool1d` over the last axis of `[B, C, T]`.
pub fn avg_pool1d(x: &Tensor, p: &Pool1d) -> Result<Tensor> {
    rank(x, 3, "avg_pool1d", "[B, C, T]")?;
    Ok(avg_pool2d(&x.unsqueeze(2)?, &p.as_2d())?.squeeze(2)?)
}

/// `AdaptiveAvgPool1d(out)`: `[B, C, T]` -> `[B, C, out]`, any `T`.
pub fn adaptive_avg_pool1d(x: &Tensor, out: usize) -> Result<Tensor> {
    rank(x, 3, "adaptive_avg_pool1d", "[B, C, T]")?;
    Ok(adaptive_avg_pool2d(&x.unsqueeze(2)?, (1, out))?.squeeze(2)?)
}

/// `AdaptiveMaxPool1d(out)`: `[B, C, T]` -> `[B, C, out]`, any `T`.
pub fn adaptive_max_pool1d(x: &Tensor, out: usize) -> Result<Tensor> {
    rank(x, 3, "adaptive_max_pool1d", "[B, C, T]")?;
    Ok(adaptive_max_pool2d(&x.unsqueeze(2)?, (1, out))?.squeeze(2)?)
}

/// Whether `dtype` holds token ids.
pub fn is_id_dtype(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64
    )
}

/// `weight[ids]`: ids of any shape `[..]` (an integer dtype), weight
/// `[vocab, dim]`; the result is `[.., dim]`. An id outside `0..vocab` is
/// [`Error::TokenId`], naming `layer` and the id's position. With
/// `padding_idx`, positions holding that id read its row but pass no
/// gradient to it (PyTorch's `padding_idx`). Differentiable in `weight`.
pub fn embedding(
    layer: &'static str,
    ids: &Tensor,
    weight: &Tensor,
    padding_idx: Option<usize>,
) -> Result<Tensor> {
    if !is_id_dtype(ids.dtype()) {
        return Err(Error::TokenDType {
            layer,
            got: ids.dtype(),
        });
    }
    let (vocab, dim) = weight.dims2()?;
    let flat = ids.flatten_all()?.to_dtype(DType::I64)?;
    let values = flat.to_vec1::<i64>()?;
    if let Some(at) = values
        .iter()
        .position(|&v| v < 0 || v as u64 >= vocab as u64)
    {
        let mut position = Vec::with_capacity(ids.rank());
        let mut rest = at;
        for &d in ids.dims().iter().rev() {
            position.push(rest % d.max(1));
            rest /= d.max(1);
        }
        position.reverse();
        return Err(Error::TokenId {
            layer,
            position,
            id: values[at],
            vocab,
        });
    }
    let index = flat.to_dtype(DType::U32)?;
    let rows = weight.index_select(&index, 0)?;
    let rows = match padding_idx {
        Some(p) if values.contains(&(p as i64)) => {
            let mask: Vec<u8> = values.iter().map(|&v| u8::from(v == p as i64)).collect();
            let mask = Tensor::from_vec(mask, (values.len(), 1), weight.device())?
                .broadcast_as((values.len(), dim))?;
            mask.where_cond(&rows.detach(), &rows)?
        }
        _ => rows,
    };
    let mut shape = ids.dims().to_vec();
    shape.push(dim);
    Ok(rows.reshape(shape)?)
}

/// Sequence lengths read from a tensor of any numeric dtype: each a whole
/// number in `min..=max`. `Err` names the first that is not ("sequence 1
/// has length 5; lengths must be whole numbers in 1..=4"), for the caller
/// to prefix with what it is.
pub(crate) fn read_lengths(
    lengths: &Tensor,
    min: usize,
    max: usize,
) -> Result<std::result::Result<Vec<usize>, String>> {
    let lens: Vec<f64> = lengths.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    let bad = lens
        .iter()
        .enumerate()
        .find(|(_, &l)| l < min as f64 || l > max as f64 || l.fract() != 0.0);
    Ok(match bad {
        Some((b, l)) => Err(format!(
            "sequence {b} has length {l}; lengths must be whole numbers in {min}..={max}"
        )),
        None => Ok(lens.into_iter().map(|l| l as usize).collect()),
    })
}

/// `x` reversed along `dim` (`torch.flip(x, [dim])`); with `lengths`
/// (`[B]`, dim 0 the batch), each sequence `b` reversed within its first
/// `lengths[b]` steps, the rest left in place. Differentiable.
pub fn reverse(x: &Tensor, dim: usize, lengths: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let Some(&n) = dims.get(dim) else {
        return Err(candle_core::Error::Msg(format!(
            "reverse: dim {dim} is out of range for {dims:?}"
        ))
        .into());
    };
    let Some(lengths) = lengths else {
        let idx: Vec<u32> = (0..n as u32).rev().collect();
        let idx = Tensor::from_vec(idx, n, x.device())?;
        return Ok(x.index_select(&idx, dim)?);
    };
    let fail = |m: String| -> Error { candle_core::Error::Msg(format!("reverse: {m}")).into() };
    let lens = read_lengths(lengths, 0, n)?.map_err(fail)?;
    let batch = dims[0];
    if dim == 0 || lens.len() != batch {
        return Err(fail(format!(
            "{} lengths for a batch of {batch} along dim {dim} (lengths need a dim after the batch)",
            lens.len()
        )));
    }
    // index[b, .., t, ..] = len_b - 1 - t inside the sequence, t past it.
    let mut shape = vec![1usize; dims.len()];
    shape[0] = batch;
    shape[dim] = n;
    let idx: Vec<u32> = lens
        .iter()
        .flat_map(|&l| (0..n).map(move |t| if t < l { (l - 1 - t) as u32 } else { t as u32 }))
        .collect();
    let idx = Tensor::from_vec(idx, shape, x.device())?
        .broadcast_as(dims.as_slice())?
        .contiguous()?;
    Ok(x.contiguous()?.gather(&idx, dim)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn flat(x: &Tensor) -> Vec<f32> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn conv1d_by_hand() {
        // x = [1, 2, 3, 4, 5], w = [1, 0, -1], stride 2, padding (1, 1):
        // padded [0, 1, 2, 3, 4, 5, 0]; windows start at 0, 2, 4:
        // 0 - 2 = -2, 2 - 4 = -2, 4 - 0 = 4; plus bias 0.5.
        let x = t(&[1., 2., 3., 4., 5.], &[1, 1, 5]);
        let w = t(&[1., 0., -1.], &[1, 1, 3]);
        let b = t(&[0.5], &[1]);
        let spec = Conv1dSpec {
            stride: 2,
            padding: (1, 1),
            ..Default::default()
        };
        let y = conv1d(&x, &w, Some(&b), &spec, Epilogue::None).unwrap();
        assert_eq!(y.dims(), &[1, 1, 3]);
        assert_eq!(flat(&y), vec![-1.5, -1.5, 4.5]);
        assert_eq!(spec.out_len(5, 3), Some(3));
    }

    #[test]
    fn causal_conv1d_sees_no_future() {
        // Left padding dilation*(k-1) = 2*(2-1) = 2, w = [1, 1]:
        // y[t] = x[t-2] + x[t] with x[<0] = 0.
        let x = t(&[1., 2., 3., 4.], &[1, 1, 4]);
        let w = t(&[1., 1.], &[1, 1, 2]);
        let spec = Conv1dSpec {
            padding: (2, 0),
            dilation: 2,
            ..Default::default()
        };
        let y = conv1d(&x, &w, None, &spec, Epilogue::None).unwrap();
        assert_eq!(flat(&y), vec![1., 2., 4., 6.]);
    }

    #[test]
    fn pools_by_hand() {
        let x = t(&[3., 1., 4., 1., 5., 9., 2.], &[1, 1, 7]);
        let p = Pool1d {
            kernel: 2,
            stride: 2,
            padding: 0,
            dilation: 1,
            ceil_mode: false,
            count_include_pad: true,
        };
        // floor((7 - 2) / 2) + 1 = 3 windows: [3, 1], [4, 1], [5, 9].
        assert_eq!(flat(&max_pool1d(&x, &p).unwrap()), vec![3., 4., 9.]);
        assert_eq!(flat(&avg_pool1d(&x, &p).unwrap()), vec![2., 2.5, 7.]);
        // Adaptive to 2 of 7: windows [0, 4) and [3, 7).
        assert_eq!(flat(&adaptive_max_pool1d(&x, 2).unwrap()), vec![4., 9.]);
    }

    #[test]
    fn embedding_reads_rows_and_names_a_bad_id() {
        let w = t(&[0., 0., 1., 2., 3., 4.], &[3, 2]);
        let ids = Tensor::new(&[[2u32, 0], [1, 2]], &Device::Cpu).unwrap();
        let y = embedding("emb", &ids, &w, None).unwrap();
        assert_eq!(y.dims(), &[2, 2, 2]);
        assert_eq!(flat(&y), vec![3., 4., 0., 0., 1., 2., 3., 4.]);
        let bad = Tensor::new(&[[2i64, 0], [1, 3]], &Device::Cpu).unwrap();
        let e = embedding("emb", &bad, &w, None).unwrap_err().to_string();
        assert!(
            e.contains("[1, 1]") && e.contains("3") && e.contains("vocabulary of 3"),
            "{e}"
        );
        let floats = t(&[0.], &[1]);
        let e = embedding("emb", &floats, &w, None).unwrap_err().to_string();
        assert!(e.contains("F32"), "{e}");
    }

    #[test]
    fn padding_row_gets_no_gradient() {
        let w = Var::from_tensor(&t(&[1., 1., 2., 2., 3., 3.], &[3, 2])).unwrap();
        let ids = Tensor::new(&[0u32, 1, 0, 2], &Device::Cpu).unwrap();
        let y = embedding("emb", &ids, w.as_tensor(), Some(0)).unwrap();
        // The padding row is still read.
        assert_eq!(flat(&y), vec![1., 1., 2., 2., 1., 1., 3., 3.]);
        let g = y.sum_all().unwrap().backward().unwrap();
        let gw = g.get(w.as_tensor()).unwrap();
        assert_eq!(flat(gw), vec![0., 0., 1., 1., 1., 1.]);
    }
}
