//! Parameters: the manifest a generated network declares, how its tensors are
//! made (initialised or loaded), and safetensors input/output.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};

use crate::{Error, Result, Rng, WeightProblem, WeightsError};

/// How a parameter is initialised by `new`, following PyTorch's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// `kaiming_uniform_(w, a)`: U(-b, b) with
    /// `b = sqrt(6 / ((1 + a^2) * fan_in))`. PyTorch's default for conv and
    /// linear weights uses `a = sqrt(5)`, which gives `b = 1 / sqrt(fan_in)`.
    KaimingUniform { a: f64, fan_in: usize },
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default bias init.
    BiasUniform { fan_in: usize },
    /// `kaiming_normal_(w)` (ReLU gain): N(0, std²) with `std = sqrt(2 / fan_in)`.
    KaimingNormal { fan_in: usize },
    /// `xavier_uniform_(w)`: U(-b, b) with `b = sqrt(6 / (fan_in + fan_out))`.
    XavierUniform { fan_in: usize, fan_out: usize },
    /// `xavier_normal_(w)`: N(0, std²) with `std = sqrt(2 / (fan_in + fan_out))`.
    XavierNormal { fan_in: usize, fan_out: usize },
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
}

impl Init {
    fn uniform_bound(self) -> Option<f64> {
        match self {
            Init::KaimingUniform { a, fan_in } => {
                Some((6.0 / ((1.0 + a * a) * fan_in.max(1) as f64)).sqrt())
            }
            Init::BiasUniform { fan_in } => Some(1.0 / (fan_in.max(1) as f64).sqrt()),
            Init::XavierUniform { fan_in, fan_out } => {
                Some((6.0 / (fan_in + fan_out).max(1) as f64).sqrt())
            }
            _ => None,
        }
    }

    fn normal_std(self) -> Option<f64> {
        match self {
            Init::KaimingNormal { fan_in } => Some((2.0 / fan_in.max(1) as f64).sqrt()),
            Init::XavierNormal { fan_in, fan_out } => {
                Some((2.0 / (fan_in + fan_out).max(1) as f64).sqrt())
            }
            _ => None,
        }
    }
}

/// One entry of a network's manifest: a tensor of its state_dict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    /// The PyTorch state_dict name (`conv1.weight`).
    pub name: &'static str,
    /// The shape, PyTorch's layout.
    pub shape: &'static [usize],
    /// The dtype the network holds it in.
    pub dtype: DType,
    /// How `new` initialises it.
    pub init: Init,
    /// Trainable parameter (`true`) or buffer (`false`, e.g. running statistics).
    pub trainable: bool,
}

impl ParamSpec {
    /// A trainable f32 weight with PyTorch's default init,
    /// `kaiming_uniform_(a = sqrt(5))` over `fan_in`.
    pub const fn weight(name: &'static str, shape: &'static [usize], fan_in: usize) -> Self {
        Self {
            name,
            shape,
            dtype: DType::F32,
            init: Init::KaimingUniform {
                a: 2.236_067_977_499_79,
                fan_in,
            },
            trainable: true,
        }
    }

    /// A trainable f32 weight with the given initialisation.
    pub const fn weight_with(name: &'static str, shape: &'static [usize], init: Init) -> Self {
        Self {
            name,
            shape,
            dtype: DType::F32,
            init,
            trainable: true,
        }
    }

    /// A trainable f32 bias with PyTorch's default init, U(±1/sqrt(fan_in)).
    pub const fn bias(name: &'static str, shape: &'static [usize], fan_in: usize) -> Self {
        Self {
            name,
            shape,
            dtype: DType::F32,
            init: Init::BiasUniform { fan_in },
            trainable: true,
        }
    }

    /// A trainable f32 tensor of ones (batch norm's `weight`).
    pub const fn ones(name: &'static str, shape: &'static [usize]) -> Self {
        Self {
            name,
            shape,
            dtype: DType::F32,
            init: Init::Ones,
            trainable: true,
        }
    }

    /// A trainable f32 tensor of zeros (batch norm's `bias`).
    pub const fn zeros(name: &'static str, shape: &'static [usize]) -> Self {
        Self {
            name,
            shape,
            dtype: DType::F32,
            init: Init::Zeros,
            trainable: true,
        }
    }

    /// A buffer (not trained, but saved and loaded): `running_mean` (zeros)
    /// or `running_var` (ones).
    pub const fn buffer(name: &'static str, shape: &'static [usize], init: Init) -> Self {
        Self {
            name,
            shape,
            dtype: DType::F32,
            init,
            trainable: false,
        }
    }

    /// An i64 scalar counter buffer (`num_batches_tracked`), starting at 0.
    pub const fn counter(name: &'static str) -> Self {
        Self {
            name,
            shape: &[],
            dtype: DType::I64,
            init: Init::Zeros,
            trainable: false,
        }
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Where a network's constructor takes its tensors from.
pub trait ParamSource {
    /// The tensor for `spec`, with exactly `spec.shape` and `spec.dtype`.
    fn take(&mut self, spec: &ParamSpec) -> Result<Tensor>;
}

/// Takes `spec`'s tensor from `source` and checks that it has the shape and
/// dtype the manifest says, so a custom source cannot hand `forward` a
/// tensor that fails later.
pub fn take(
    source: &mut impl ParamSource,
    network: &'static str,
    spec: &ParamSpec,
) -> Result<Tensor> {
    let t = source.take(spec)?;
    let problem = if t.dims() != spec.shape {
        Some(WeightProblem::Shape {
            name: spec.name.to_string(),
            expected: spec.shape.to_vec(),
            found: t.dims().to_vec(),
        })
    } else if t.dtype() != spec.dtype {
        Some(WeightProblem::DType {
            name: spec.name.to_string(),
            expected: dtype_name(spec.dtype).to_string(),
            found: dtype_name(t.dtype()).to_string(),
        })
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::Source { network, problem }),
        None => Ok(t),
    }
}

/// Initialises parameters as PyTorch does, from the runtime's seeded [`Rng`].
#[derive(Debug, Clone)]
pub struct Initializer {
    seed: u64,
    device: Device,
}

impl Initializer {
    /// Values fixed by `seed`: the same seed gives the same weights.
    pub fn seeded(seed: u64, device: &Device) -> Self {
        Self {
            seed,
            device: device.clone(),
        }
    }

    /// Values from a fresh seed drawn from the operating system.
    pub fn from_entropy(device: &Device) -> Self {
        Self::seeded(Rng::entropy_seed(), device)
    }
}

impl ParamSource for Initializer {
    fn take(&mut self, spec: &ParamSpec) -> Result<Tensor> {
        let shape = spec.shape.to_vec();
        let t = match spec.init {
            Init::Zeros => Tensor::zeros(shape, spec.dtype, &self.device)?,
            Init::Ones => Tensor::ones(shape, spec.dtype, &self.device)?,
            init => {
                let mut rng = Rng::stream(self.seed, spec.name);
                let values = match init.normal_std() {
                    Some(std) => rng.normal_vec(spec.numel(), std as f32),
                    None => {
                        let b = init.uniform_bound().unwrap_or(0.0) as f32;
                        rng.uniform_vec(spec.numel(), -b, b)
                    }
                };
                Tensor::from_vec(values, shape, &Device::Cpu)?
                    .to_dtype(spec.dtype)?
                    .to_device(&self.device)?
            }
        };
        Ok(t)
    }
}

/// Tensors read from a weight file whose header was checked against a
/// manifest; `take` hands each one out once.
#[derive(Debug)]
pub struct LoadedWeights {
    tensors: HashMap<String, Tensor>,
}

impl ParamSource for LoadedWeights {
    fn take(&mut self, spec: &ParamSpec) -> Result<Tensor> {
        // `load_weights` checked every name against the manifest; a miss here
        // means a manifest that names one tensor twice.
        self.tensors.remove(spec.name).ok_or_else(|| {
            candle_core::Error::Msg(format!("tensor `{}` requested twice", spec.name)).into()
        })
    }
}

#[derive(serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// Reads and validates a safetensors header without reading tensor data.
fn read_header(path: &Path) -> Result<BTreeMap<String, HeaderEntry>> {
    let io = |source| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let format = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    if file_len < 8 {
        return Err(format(format!(
            "the file has {file_len} bytes, fewer than the 8-byte header length"
        )));
    }
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(io)?;
    let n = u64::from_le_bytes(n);
    if n > file_len - 8 {
        return Err(format(format!(
            "the header claims {n} bytes but the file has only {} after the length (truncated?)",
            file_len - 8
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(io)?;
    let mut entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| format(format!("the header is not valid JSON: {e}")))?;
    entries.remove("__metadata__");
    let mut out = BTreeMap::new();
    let mut data_end = 0;
    for (name, value) in entries {
        let entry: HeaderEntry = serde_json::from_value(value)
            .map_err(|e| format(format!("header entry `{name}` is malformed: {e}")))?;
        data_end = data_end.max(entry.data_offsets.1);
        out.insert(name, entry);
    }
    let have = file_len - 8 - n;
    if (data_end as u64) > have {
        return Err(format(format!(
            "the file is truncated: its header describes {data_end} bytes of tensor data, \
             but only {have} follow the header"
        )));
    }
    Ok(out)
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::U32 => "U32",
        DType::U8 => "U8",
        _ => "other",
    }
}

/// Whether a file dtype can be converted to `want` without changing meaning:
/// any float into a float, the same integer type into itself.
fn dtype_compatible(found: &str, want: DType) -> bool {
    const FLOATS: [&str; 4] = ["F16", "BF16", "F32", "F64"];
    if want.is_float() {
        FLOATS.contains(&found)
    } else {
        found == dtype_name(want)
    }
}

/// Checks a safetensors file's header against `manifest` and lists every
/// problem at once (missing, unexpected, mis-shaped, wrong dtype), without
/// reading any tensor data.
pub fn check_weights(
    network: &'static str,
    path: impl AsRef<Path>,
    manifest: &[ParamSpec],
) -> Result<()> {
    let path = path.as_ref();
    let header = read_header(path)?;
    let entries = header
        .iter()
        .map(|(name, e)| (name.as_str(), e.dtype.as_str(), e.shape.as_slice()));
    check_entries(network, path, entries, manifest)
}

/// The manifest check shared by files and in-memory maps: every entry
/// `(name, dtype, shape)` against `manifest`, all problems at once.
fn check_entries<'a>(
    network: &'static str,
    path: &Path,
    entries: impl Iterator<Item = (&'a str, &'a str, &'a [usize])>,
    manifest: &[ParamSpec],
) -> Result<()> {
    let entries: BTreeMap<&str, (&str, &[usize])> = entries.map(|(n, d, s)| (n, (d, s))).collect();
    let mut problems = Vec::new();
    for spec in manifest {
        match entries.get(spec.name) {
            None => problems.push(WeightProblem::Missing {
                name: spec.name.to_string(),
                expected: spec.shape.to_vec(),
            }),
            Some((_, shape)) if *shape != spec.shape => problems.push(WeightProblem::Shape {
                name: spec.name.to_string(),
                expected: spec.shape.to_vec(),
                found: shape.to_vec(),
            }),
            Some((dtype, _)) if !dtype_compatible(dtype, spec.dtype) => {
                problems.push(WeightProblem::DType {
                    name: spec.name.to_string(),
                    expected: dtype_name(spec.dtype).to_string(),
                    found: dtype.to_string(),
                })
            }
            Some(_) => {}
        }
    }
    for (name, (_, shape)) in &entries {
        if !manifest.iter().any(|s| s.name == *name) {
            problems.push(WeightProblem::Unexpected {
                name: name.to_string(),
                found: shape.to_vec(),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(WeightsError {
            network,
            path: path.to_path_buf(),
            problems,
        }
        .into())
    }
}

impl LoadedWeights {
    /// Tensors already in memory (a checkpoint's model part), checked
    /// against `manifest` as a file would be and moved to `device`.
    pub fn from_map(
        network: &'static str,
        tensors: HashMap<String, Tensor>,
        manifest: &[ParamSpec],
        device: &Device,
    ) -> Result<Self> {
        let dtypes: Vec<(String, &'static str)> = tensors
            .iter()
            .map(|(n, t)| (n.clone(), dtype_name(t.dtype())))
            .collect();
        let entries = tensors
            .iter()
            .zip(&dtypes)
            .map(|((n, t), (_, d))| (n.as_str(), *d, t.dims()));
        check_entries(network, Path::new("<in memory>"), entries, manifest)?;
        let mut out = HashMap::with_capacity(tensors.len());
        for spec in manifest {
            if let Some(t) = tensors.get(spec.name) {
                out.insert(
                    spec.name.to_string(),
                    t.to_dtype(spec.dtype)?.to_device(device)?,
                );
            }
        }
        Ok(Self { tensors: out })
    }
}

/// Reads a safetensors weight file for a network: checks it against the
/// manifest first (every problem reported together), then loads each tensor
/// onto `device`, converting float dtypes to the manifest's.
pub fn load_weights(
    network: &'static str,
    path: impl AsRef<Path>,
    manifest: &[ParamSpec],
    device: &Device,
) -> Result<LoadedWeights> {
    let path = path.as_ref();
    check_weights(network, path, manifest)?;
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut tensors = HashMap::with_capacity(manifest.len());
    for spec in manifest {
        let view = file.tensor(spec.name).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let t = view
            .load(&Device::Cpu)?
            .to_dtype(spec.dtype)?
            .to_device(device)?;
        tensors.insert(spec.name.to_string(), t);
    }
    Ok(LoadedWeights { tensors })
}

/// Writes named tensors to a safetensors file (PyTorch state_dict names).
pub fn save_weights(path: impl AsRef<Path>, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), (*t).clone()))
        .collect();
    candle_core::safetensors::save(&map, path).map_err(|e| match e {
        candle_core::Error::Io(source) => Error::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        },
        other => other.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytorch_default_bounds() {
        // kaiming_uniform(a = sqrt(5)) over fan_in 25: gain = sqrt(2 / 6),
        // std = gain / 5, bound = sqrt(3) * std = 1 / 5.
        let k = Init::KaimingUniform {
            a: 5f64.sqrt(),
            fan_in: 25,
        };
        assert!((k.uniform_bound().unwrap() - 0.2).abs() < 1e-12);
        let b = Init::BiasUniform { fan_in: 400 };
        assert!((b.uniform_bound().unwrap() - 0.05).abs() < 1e-12);
    }

    #[test]
    fn selectable_inits_have_pytorch_scale() {
        let std_of = |init: Init| {
            let spec = ParamSpec::weight_with("w", &[200, 100], init);
            let t = Initializer::seeded(3, &Device::Cpu).take(&spec).unwrap();
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let mean = v.iter().sum::<f32>() / v.len() as f32;
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
        };
        // kaiming_normal over fan_in 100: std sqrt(2/100) = 0.1414
        assert!((std_of(Init::KaimingNormal { fan_in: 100 }) - 0.1414).abs() < 0.005);
        // xavier_normal over 100 + 200: std sqrt(2/300) = 0.0816
        let xn = std_of(Init::XavierNormal {
            fan_in: 100,
            fan_out: 200,
        });
        assert!((xn - 0.0816).abs() < 0.003, "{xn}");
        // xavier_uniform: bound sqrt(6/300) = 0.1414, std = bound / sqrt(3) = 0.0816
        let xu = std_of(Init::XavierUniform {
            fan_in: 100,
            fan_out: 200,
        });
        assert!((xu - 0.0816).abs() < 0.003, "{xu}");
    }

    #[test]
    fn initializer_respects_bound_and_seed() {
        let spec = ParamSpec {
            name: "fc.weight",
            shape: &[10, 400],
            dtype: DType::F32,
            init: Init::KaimingUniform {
                a: 5f64.sqrt(),
                fan_in: 400,
            },
            trainable: true,
        };
        let a = Initializer::seeded(1, &Device::Cpu).take(&spec).unwrap();
        let b = Initializer::seeded(1, &Device::Cpu).take(&spec).unwrap();
        let va: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let vb: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(va, vb);
        assert!(va.iter().all(|v| v.abs() <= 0.05));
        // roughly uniform: the largest magnitude is near the bound
        assert!(va.iter().fold(0f32, |m, v| m.max(v.abs())) > 0.049);
    }
}
