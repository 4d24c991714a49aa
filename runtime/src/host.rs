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
