//! Training checkpoints: the network's tensors (parameters and buffers),
//! the optimiser's state and the dropout generator's state in one
//! safetensors file, with a small text header (epoch, step, ..) in its
//! metadata, so a resumed run continues exactly where it stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

const MODEL: &str = "model/";
const OPTIMIZER: &str = "optimizer/";
const RNG: &str = "rng/dropout";

/// What a checkpoint holds.
#[derive(Debug)]
pub struct Checkpoint {
    /// The network's tensors by state_dict name (for `from_tensors`).
    pub model: HashMap<String, Tensor>,
    /// The optimiser's state (for `Optimizer::load_state`).
    pub optimizer: HashMap<String, Tensor>,
    /// The dropout generator's state (for `set_rng_state`).
    pub rng: [u8; 56],
    /// The header: whatever the training loop recorded (epoch, step, ..).
    pub meta: BTreeMap<String, String>,
}

/// Writes a checkpoint.
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    model: &[(&str, &Tensor)],
    optimizer: &[(String, Tensor)],
    rng: [u8; 56],
    meta: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let rng = Tensor::from_vec(rng.to_vec(), 56, &Device::Cpu)?;
    let mut entries: Vec<(String, Tensor)> = Vec::new();
    for (name, t) in model {
        entries.push((
            format!("{MODEL}{name}"),
            t.detach().to_device(&Device::Cpu)?,
        ));
    }
    for (name, t) in optimizer {
        entries.push((
            format!("{OPTIMIZER}{name}"),
            t.detach().to_device(&Device::Cpu)?,
        ));
    }
    entries.push((RNG.to_string(), rng));
    let mut header: HashMap<String, String> =
        meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    header.insert("format".into(), "netdsl-checkpoint-1".into());
    let views: Vec<(&str, &Tensor)> = entries.iter().map(|(n, t)| (n.as_str(), t)).collect();
    safetensors::serialize_to_file(views, Some(header), path).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: format!("cannot write the checkpoint: {e}"),
    })
}

/// Reads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint(path: impl AsRef<Path>, device: &Device) -> Result<Checkpoint> {
    let path = path.as_ref();
    let format = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let (_, metadata) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
    let mut meta: BTreeMap<String, String> = metadata
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if meta.remove("format").as_deref() != Some("netdsl-checkpoint-1") {
        return Err(format(
            "not a netdsl checkpoint (no `format: netdsl-checkpoint-1` header)".into(),
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)?;
    let mut model = HashMap::new();
    let mut optimizer = HashMap::new();
    let mut rng = None;
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix(MODEL) {
            model.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(OPTIMIZER) {
            optimizer.insert(n.to_string(), t);
        } else if name == RNG && t.dtype() == DType::U8 && t.dims() == [56] {
            let v: Vec<u8> = t.to_vec1()?;
            let mut state = [0u8; 56];
            state.copy_from_slice(&v);
            rng = Some(state);
        } else {
            return Err(format(format!(
                "unexpected entry `{name}` of shape {:?}",
                t.dims()
            )));
        }
    }
    let rng = rng.ok_or_else(|| format("no `rng/dropout` state".into()))?;
    Ok(Checkpoint {
        model,
        optimizer,
        rng,
        meta,
    })
}
