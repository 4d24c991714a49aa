//! How the ViT example reads torchvision's weights: the state_dict from a
//! safetensors file, with the learned position embedding resized
//! (torchvision's `interpolate_embeddings`: bicubic, `align_corners`, the
//! class token's position kept) when the checkpoint was trained at another
//! image size than the network is declared at. `tests/vit.rs` runs this
//! same code on a width-reduced torchvision model.

use std::collections::HashMap;
use std::path::Path;

use netdsl::candle::{Device, Tensor};
use netdsl::ParamSpec;

/// The state_dict in `path`, every `*pos_embedding` of `manifest` resized to
/// the network's grid of patches where the file's differs. Returns the
/// tensors (on the CPU; `from_tensors` moves them) and one line per resized
/// embedding.
pub fn torchvision_state(
    path: &Path,
    manifest: &[ParamSpec],
) -> netdsl::Result<(HashMap<String, Tensor>, Vec<String>)> {
    let mut state = netdsl::candle::safetensors::load(path, &Device::Cpu)?;
    let mut notes = Vec::new();
    for spec in manifest
        .iter()
        .filter(|s| s.name.ends_with("pos_embedding"))
    {
        // `[1, 1 + n·n, E]`: the class token's position and an n x n grid.
        let t = spec.shape.get(1).copied().unwrap_or(0);
        let n = (t.saturating_sub(1) as f64).sqrt().round() as usize;
        if n * n + 1 != t {
            continue;
        }
        let before = state.get(spec.name).map(|p| p.dims().to_vec());
        if netdsl::interpolate_embeddings(&mut state, spec.name, (n, n))? {
            notes.push(format!(
                "{}: {:?} interpolated to [1, {t}, ..] ({n}x{n} patches)",
                spec.name,
                before.unwrap_or_default()
            ));
        }
    }
    Ok((state, notes))
}

/// [`torchvision_state`], then the network built from it (strict: every
/// tensor present with the manifest's shape).
pub fn load<N>(
    path: &Path,
    manifest: &[ParamSpec],
    device: &Device,
    from_tensors: impl Fn(HashMap<String, Tensor>, &Device) -> netdsl::Result<N>,
) -> netdsl::Result<N> {
    let (state, notes) = torchvision_state(path, manifest)?;
    for note in notes {
        println!("{note}");
    }
    from_tensors(state, device)
}
