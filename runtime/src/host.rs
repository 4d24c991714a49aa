//! Borrowing f32 CPU data without a copy: a custom op's contiguous input,
//! and a tensor's storage. One place for what the custom ops (batch norm,
//! the LSTM cell, the filters) and the fast paths (linear, max pooling,
//! batch norm's statistics) each need.

use candle_core::{CpuStorage, Layout, Storage, Tensor};

/// A custom op's input as a contiguous f32 slice, or an error naming `op`.
pub(crate) fn f32_slice<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected an f32 input");
    };
    match layout.contiguous_offsets() {
        Some((a, b)) if b <= data.len() => Ok(&data[a..b]),
        _ => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

/// `f` of the f32 data of a contiguous CPU tensor, borrowed; `None` for
/// any other tensor (call `.contiguous()` first where a copy is fine).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(v)) = &*storage else {
        return None;
    };
    let (a, b) = layout.contiguous_offsets()?;
    Some(f(v.get(a..b)?))
}

/// A tensor's data as f32 on the host: borrowed where it already is
/// contiguous f32 CPU data (its storage held for reading meanwhile), else
/// a copy. The backward passes read their saved tensors through it instead
/// of copying each one out.
pub(crate) enum HostF32<'a> {
    Borrowed(
        Box<dyn std::ops::Deref<Target = Storage> + 'a>,
        usize,
        usize,
    ),
    Owned(Vec<f32>),
}

impl<'a> HostF32<'a> {
    pub(crate) fn of(t: &'a Tensor) -> candle_core::Result<Self> {
        let (guard, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) =
            (&*guard, layout.contiguous_offsets())
        {
            if b <= v.len() {
                return Ok(HostF32::Borrowed(Box::new(guard), a, b));
            }
        }
        drop(guard);
        Ok(HostF32::Owned(
            t.to_device(&candle_core::Device::Cpu)?
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        ))
    }

    pub(crate) fn slice(&self) -> &[f32] {
        match self {
            HostF32::Borrowed(guard, a, b) => match &***guard {
                Storage::Cpu(CpuStorage::F32(v)) => &v[*a..*b],
                // `of` borrows only f32 CPU storage.
                _ => &[],
            },
            HostF32::Owned(v) => v,
        }
    }
}
