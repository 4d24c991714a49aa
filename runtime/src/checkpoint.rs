//! Training checkpoints: the network's tensors (parameters and buffers),
//! the optimiser's state and the dropout generator's state in one
//! safetensors file, with a small text header (epoch, step, ..) in its
//! metadata, so a resumed run continues exactly where it stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::weights_file::{candle_dtype, write_safetensors, Entry, WeightsFile};
use crate::{Error, Result};

const FORMAT: &str = "netdsl-checkpoint-1";
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

/// Writes a checkpoint, atomically: to a temporary file in the same
/// directory, then renamed over `path`, so an interrupted or concurrent save
/// never leaves a torn checkpoint.
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    model: &[(&str, &Tensor)],
    optimizer: &[(String, Tensor)],
    rng: [u8; 56],
    meta: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let rng = Tensor::from_vec(rng.to_vec(), 56, &Device::Cpu)?;
    let names: Vec<String> = model
        .iter()
        .map(|(name, _)| format!("{MODEL}{name}"))
        .chain(
            optimizer
                .iter()
                .map(|(name, _)| format!("{OPTIMIZER}{name}")),
        )
        .collect();
    let tensors = model
        .iter()
        .map(|(_, t)| *t)
        .chain(optimizer.iter().map(|(_, t)| t))
        .chain([&rng]);
    let entries: Vec<(&str, &Tensor)> = names
        .iter()
        .map(String::as_str)
        .chain([RNG])
        .zip(tensors)
        .collect();
    let mut header = meta.clone();
    header.insert("format".into(), FORMAT.into());
    write_safetensors(path, &entries, None, &header)
}

/// Reads a checkpoint written by [`save_checkpoint`]. The file is validated
/// whole before any tensor is read, and each tensor is read once.
pub fn load_checkpoint(path: impl AsRef<Path>, device: &Device) -> Result<Checkpoint> {
    let path = path.as_ref();
    let format = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut file = WeightsFile::open(path)?;
    let mut meta = file.metadata.clone();
    if meta.remove("format").as_deref() != Some(FORMAT) {
        return Err(format(format!(
            "not a netdsl checkpoint (no `format: {FORMAT}` header)"
        )));
    }
    let mut entries: Vec<Entry> = file.entries.values().cloned().collect();
    entries.sort_by_key(|e| e.start);
    let mut model = HashMap::new();
    let mut optimizer = HashMap::new();
    let mut rng = None;
    for entry in entries {
        let dtype = candle_dtype(entry.dtype).ok_or_else(|| {
            format(format!(
                "entry `{}` has the dtype {:?}, which candle cannot hold",
                entry.name, entry.dtype
            ))
        })?;
        let t = file.read(&entry, dtype, device, false, false)?;
        let name = entry.name;
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
