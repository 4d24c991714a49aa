//! What the structs `network!` emits for reusable blocks need at run time:
//! the mode a network passes to its blocks, and building a block's
//! parameters from the network's manifest.

use candle_core::Tensor;

use crate::{make_var, take, Error, Generator, ParamSource, ParamSpec, Result};

/// The network's mode, handed to each block's `forward`.
#[derive(Debug, Clone, Copy)]
pub struct BlockCx<'a> {
    /// Training mode (`train()`): dropout live, batch norm on batch statistics.
    pub training: bool,
    /// Inference fusions on (`set_fusion`).
    pub fusion: bool,
    /// The network's dropout generator.
    pub rng: &'a Generator,
}

/// The next parameter of a block: `manifest[*next]` from `source`, checked,
/// as a variable; advances `next`.
pub fn next_param(
    source: &mut impl ParamSource,
    network: &'static str,
    manifest: &[ParamSpec],
    next: &mut usize,
) -> Result<Tensor> {
    let spec = manifest.get(*next).ok_or_else(|| Error::Block {
        block: network,
        message: format!(
            "the manifest has {} entries, the block asked for entry {}",
            manifest.len(),
            *next
        ),
    })?;
    *next += 1;
    make_var(take(source, network, spec)?)
}

/// The error for an optional child that a block's branch needs but this
/// instance was built without (only reachable through a hand-edited struct).
pub fn missing_child(block: &'static str, field: &'static str) -> Error {
    Error::Block {
        block,
        message: format!("this instance has no `{field}`, but its branch uses it"),
    }
}

/// `(h * sh, w * sw)` of a `[B, C, H, W]` tensor: the output size of an
/// up-sampling by whole factors, over a size only the input decides.
pub fn scaled_size(x: &Tensor, (sh, sw): (usize, usize)) -> Result<(usize, usize)> {
    let (_, _, h, w) = x.dims4()?;
    Ok((h * sh, w * sw))
}
