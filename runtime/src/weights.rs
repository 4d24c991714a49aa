//! Loading and saving a network's tensors: strict or not (as PyTorch's
//! `load_state_dict(strict=..)`), with the file's keys remapped, half
//! precision converted, and nothing handed to the network until every
//! tensor it will get has been read and checked.
//!
//! A generated network calls [`load_weights`], [`check_weights`],
//! [`LoadedWeights::from_map`] and [`save_weights`] (all strict); the
//! options go through [`LoadOptions`] and [`SaveOptions`], and the result
//! goes to the network's `from_source`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::params::{Initializer, ParamSource, ParamSpec};
use crate::weights_file::{dtype_name, write_safetensors, Entry, WeightsFile};
use crate::{Error, FileProblem, Result, WeightProblem, WeightsError};

type KeyFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// One step of the key remapping.
#[derive(Clone)]
enum Rule {
    /// Keys starting with the prefix lose it; the others pass unchanged.
    StripPrefix(String),
    /// Only keys starting with the prefix are considered, without it.
    Under(String),
    /// A user function; `None` ignores the key.
    Map(Arc<KeyFn>),
}

/// How to read a weight file into a network: strict or not, how the file's
/// keys map to the network's state_dict names, and whether to refuse
/// weights that are NaN or infinite.
///
/// ```
/// # use netdsl_runtime::LoadOptions;
/// // A checkpoint of `nn.DataParallel(model)` with extra tensors beside the
/// // model's: load what matches and report the rest.
/// let opts = LoadOptions::new().strict(false).strip_prefix("module.");
/// assert_eq!(opts.map_key("module.fc1.weight").as_deref(), Some("fc1.weight"));
/// ```
#[derive(Clone)]
pub struct LoadOptions {
    strict: bool,
    check_finite: bool,
    rules: Vec<Rule>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|r| match r {
                Rule::StripPrefix(p) => format!("strip_prefix({p:?})"),
                Rule::Under(p) => format!("prefix({p:?})"),
                Rule::Map(_) => "remap(<fn>)".to_string(),
            })
            .collect();
        f.debug_struct("LoadOptions")
            .field("strict", &self.strict)
            .field("check_finite", &self.check_finite)
            .field("rules", &rules)
            .finish()
    }
}

impl LoadOptions {
    /// Strict, keys as they are, no check of the values: what `load` does.
    pub fn new() -> Self {
        Self {
            strict: true,
            check_finite: false,
            rules: Vec::new(),
        }
    }

    /// Strict (the default): any missing, unexpected or mis-shaped tensor is
    /// an error listing all of them. Not strict: the tensors that fit are
    /// loaded, the others are listed in [`LoadedWeights::report`] and the
    /// network's own values stand in for the missing and mis-shaped ones
    /// (see [`LoadedWeights::keep_missing`]).
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Refuse a weight holding NaN or an infinity (after conversion to the
    /// network's dtype) with [`FileProblem::NonFinite`]. Off by default: it
    /// reads every value once more.
    pub fn check_finite(mut self, check: bool) -> Self {
        self.check_finite = check;
        self
    }

    /// Keys starting with `prefix` lose it; other keys pass unchanged
    /// (`"module."` for a checkpoint of `nn.DataParallel`).
    pub fn strip_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.rules.push(Rule::StripPrefix(prefix.into()));
        self
    }

    /// Loads a sub-network: only keys starting with `prefix` are considered,
    /// with the prefix removed (`"encoder."` takes `encoder.conv1.weight` as
    /// `conv1.weight`); the rest of the file is ignored, not unexpected.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.rules.push(Rule::Under(prefix.into()));
        self
    }

    /// Any other renaming: `f` gets a key (after the rules added before it)
    /// and returns the network's name for it, or `None` to ignore it.
    pub fn remap(mut self, f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.rules.push(Rule::Map(Arc::new(f)));
        self
    }

    /// The network name a file key maps to, or `None` when it is ignored.
    pub fn map_key(&self, key: &str) -> Option<String> {
        let mut key = key.to_string();
        for rule in &self.rules {
            key = match rule {
                Rule::StripPrefix(p) => match key.strip_prefix(p.as_str()) {
                    Some(rest) => rest.to_string(),
                    None => key,
                },
                Rule::Under(p) => key.strip_prefix(p.as_str())?.to_string(),
                Rule::Map(f) => f(&key)?,
            };
        }
        Some(key)
    }

    /// Checks a file's header against `manifest` without reading tensor
    /// data: a malformed header is an error; so are mismatches when strict.
    pub fn check(
        &self,
        network: &'static str,
        path: impl AsRef<Path>,
        manifest: &[ParamSpec],
    ) -> Result<LoadReport> {
        let file = WeightsFile::open(path.as_ref())?;
        let keys = file
            .entries
            .values()
            .map(|e| (e.name.as_str(), format!("{:?}", e.dtype), e.shape.clone()));
        Ok(self.plan(network, &file.path, keys, manifest)?.report)
    }

    /// Reads the tensors of a safetensors file that `manifest` needs, for
    /// the network's `from_source`. The whole header is validated first; then
    /// every tensor to load is read (once, into the buffer the network will
    /// keep), converted to the manifest's dtype and checked. Any error leaves
    /// nothing loaded.
    pub fn load(
        &self,
        network: &'static str,
        path: impl AsRef<Path>,
        manifest: &[ParamSpec],
        device: &Device,
    ) -> Result<LoadedWeights> {
        let mut file = WeightsFile::open(path.as_ref())?;
        let keys = file
            .entries
            .values()
            .map(|e| (e.name.as_str(), format!("{:?}", e.dtype), e.shape.clone()));
        let plan = self.plan(network, &file.path, keys, manifest)?;
        // In file order: the reads go forward through the file.
        let mut todo: Vec<(&ParamSpec, Entry)> = plan
            .matched
            .iter()
            .map(|(spec, key)| (&manifest[*spec], file.entries[key].clone()))
            .collect();
        todo.sort_by_key(|(_, e)| e.start);
        let mut tensors = HashMap::with_capacity(todo.len());
        for (spec, entry) in todo {
            let t = file.read(&entry, spec.dtype, device, true, self.check_finite)?;
            tensors.insert(spec.name.to_string(), t);
        }
        Ok(LoadedWeights::new(tensors, plan.report, device))
    }

    /// [`Self::load`] for tensors already in memory (a checkpoint's model
    /// part): the same remapping, checks and report.
    pub fn load_map(
        &self,
        network: &'static str,
        mut tensors: HashMap<String, Tensor>,
        manifest: &[ParamSpec],
        device: &Device,
    ) -> Result<LoadedWeights> {
        let path = Path::new("<in memory>");
        let keys = tensors.iter().map(|(k, t)| {
            (
                k.as_str(),
                dtype_name(t.dtype()).to_string(),
                t.dims().to_vec(),
            )
        });
        let plan = self.plan(network, path, keys, manifest)?;
        let mut out = HashMap::with_capacity(plan.matched.len());
        for (spec, key) in &plan.matched {
            let spec = &manifest[*spec];
            let t = tensors
                .remove(key)
                .ok_or_else(|| candle_core::Error::Msg(format!("tensor `{key}` matched twice")))?;
            let t = t.to_dtype(spec.dtype)?.to_device(device)?;
            if self.check_finite && t.dtype().is_float() {
                let values: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
                if let Some((index, &value)) =
                    values.iter().enumerate().find(|(_, v)| !v.is_finite())
                {
                    return Err(Error::Malformed {
                        path: path.to_path_buf(),
                        problem: FileProblem::NonFinite {
                            tensor: key.clone(),
                            index,
                            value,
                        },
                    });
                }
            }
            out.insert(spec.name.to_string(), t);
        }
        Ok(LoadedWeights::new(out, plan.report, device))
    }

    /// Maps every key, matches the result against the manifest and lists
    /// the problems: all of them are an error when strict, and keys that
    /// collide after remapping always are.
    fn plan<'k>(
        &self,
        network: &'static str,
        path: &Path,
        keys: impl Iterator<Item = (&'k str, String, Vec<usize>)>,
        manifest: &[ParamSpec],
    ) -> Result<Plan> {
        // name -> every (key, dtype, shape) mapped to it
        let mut mapped: BTreeMap<String, Vec<(String, String, Vec<usize>)>> = BTreeMap::new();
        let mut ignored = Vec::new();
        for (key, dtype, shape) in keys {
            match self.map_key(key) {
                Some(name) => mapped
                    .entry(name)
                    .or_default()
                    .push((key.to_string(), dtype, shape)),
                None => ignored.push(key.to_string()),
            }
        }
        let fail = |problems| -> Error {
            WeightsError {
                network,
                path: path.to_path_buf(),
                problems,
            }
            .into()
        };
        let duplicates: Vec<WeightProblem> = mapped
            .iter()
            .filter(|(_, from)| from.len() > 1)
            .map(|(name, from)| WeightProblem::Duplicate {
                name: name.clone(),
                keys: from.iter().map(|(k, _, _)| k.clone()).collect(),
            })
            .collect();
        if !duplicates.is_empty() {
            return Err(fail(duplicates));
        }
        let mut problems = Vec::new();
        let mut matched = Vec::new();
        for (i, spec) in manifest.iter().enumerate() {
            match mapped.get(spec.name).map(|from| &from[0]) {
                None => problems.push(WeightProblem::Missing {
                    name: spec.name.to_string(),
                    expected: spec.shape.to_vec(),
                }),
                Some((_, _, shape)) if shape.as_slice() != spec.shape => {
                    problems.push(WeightProblem::Shape {
                        name: spec.name.to_string(),
                        expected: spec.shape.to_vec(),
                        found: shape.clone(),
                    })
                }
                Some((_, dtype, _)) if !dtype_compatible(dtype, spec.dtype) => {
                    problems.push(WeightProblem::DType {
                        name: spec.name.to_string(),
                        expected: dtype_name(spec.dtype).to_string(),
                        found: dtype.clone(),
                    })
                }
                Some((key, _, _)) => matched.push((i, key.clone())),
            }
        }
        for (name, from) in &mapped {
            if !manifest.iter().any(|s| s.name == name) {
                problems.push(WeightProblem::Unexpected {
                    name: name.clone(),
                    found: from[0].2.clone(),
                });
            }
        }
        if self.strict && !problems.is_empty() {
            return Err(fail(problems));
        }
        let loaded = matched
            .iter()
            .map(|(i, _)| manifest[*i].name.to_string())
            .collect();
        Ok(Plan {
            matched,
            report: LoadReport {
                network,
                path: path.to_path_buf(),
                loaded,
                problems,
                ignored,
            },
        })
    }
}

/// Which manifest entries load from which key, and what the user is told.
struct Plan {
    /// (manifest index, source key)
    matched: Vec<(usize, String)>,
    report: LoadReport,
}

/// Whether a file dtype converts to `want` without changing meaning: any
/// float into a float, an integer type only into itself.
fn dtype_compatible(found: &str, want: DType) -> bool {
    const FLOATS: [&str; 4] = ["F16", "BF16", "F32", "F64"];
    if want.is_float() {
        FLOATS.contains(&found)
    } else {
        found == dtype_name(want)
    }
}

/// What a load did, as PyTorch's `load_state_dict` returns its
/// `missing_keys` and `unexpected_keys`, plus the mis-shaped keys (never
/// loaded) and the keys the remapping ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The network being loaded.
    pub network: &'static str,
    /// The weight file (`<in memory>` for a map).
    pub path: PathBuf,
    /// The network's names that were loaded, in manifest order.
    pub loaded: Vec<String>,
    /// Every disagreement, in manifest order, then unexpected names sorted.
    pub problems: Vec<WeightProblem>,
    /// File keys the remapping dropped (not under the prefix, or mapped to
    /// `None`).
    pub ignored: Vec<String>,
}

impl LoadReport {
    /// Whether every tensor of the network was loaded and the file had
    /// nothing else (ignored keys aside).
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
    }

    /// The network's names the file lacks.
    pub fn missing(&self) -> Vec<&str> {
        self.names(|p| matches!(p, WeightProblem::Missing { .. }))
    }

    /// The file's names (after remapping) the network does not have.
    pub fn unexpected(&self) -> Vec<&str> {
        self.names(|p| matches!(p, WeightProblem::Unexpected { .. }))
    }

    /// Names present in both whose shape or dtype does not fit; they keep the
    /// network's values.
    pub fn mismatched(&self) -> Vec<&str> {
        self.names(|p| matches!(p, WeightProblem::Shape { .. } | WeightProblem::DType { .. }))
    }

    fn names(&self, keep: impl Fn(&WeightProblem) -> bool) -> Vec<&str> {
        self.problems
            .iter()
            .filter(|p| keep(p))
            .map(|p| match p {
                WeightProblem::Missing { name, .. }
                | WeightProblem::Unexpected { name, .. }
                | WeightProblem::Shape { name, .. }
                | WeightProblem::DType { name, .. }
                | WeightProblem::Duplicate { name, .. } => name.as_str(),
            })
            .collect()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` loaded {} tensors from `{}`",
            self.network,
            self.loaded.len(),
            self.path.display()
        )?;
        if !self.ignored.is_empty() {
            write!(f, " ({} keys ignored by the remapping)", self.ignored.len())?;
        }
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Where the tensors a non-strict load did not provide come from.
#[derive(Debug)]
enum Fallback {
    /// PyTorch's default initialisation, as `new` would give.
    Init(Initializer),
    /// Copies of a network's current tensors.
    Keep(HashMap<String, Tensor>),
}

/// Tensors read and checked against a manifest, for a network's
/// `from_source`, with the report of what was (not) loaded.
#[derive(Debug)]
pub struct LoadedWeights {
    tensors: HashMap<String, Tensor>,
    report: LoadReport,
    fallback: Fallback,
    device: Device,
}

impl LoadedWeights {
    fn new(tensors: HashMap<String, Tensor>, report: LoadReport, device: &Device) -> Self {
        Self {
            tensors,
            report,
            fallback: Fallback::Init(Initializer::from_entropy(device)),
            device: device.clone(),
        }
    }

    /// Tensors already in memory (a checkpoint's model part), checked
    /// against `manifest` as a file would be (strict) and moved to `device`.
    pub fn from_map(
        network: &'static str,
        tensors: HashMap<String, Tensor>,
        manifest: &[ParamSpec],
        device: &Device,
    ) -> Result<Self> {
        LoadOptions::new().load_map(network, tensors, manifest, device)
    }

    /// What was loaded, and what was missing, unexpected or mis-shaped.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// The report, once the network is built.
    pub fn into_report(self) -> LoadReport {
        self.report
    }

    /// Tensors the file did not provide (missing or mis-shaped) take
    /// PyTorch's default initialisation from `seed` (by default from a fresh
    /// seed, as `new` does).
    pub fn init_missing_seeded(mut self, seed: u64) -> Self {
        self.fallback = Fallback::Init(Initializer::seeded(seed, &self.device));
        self
    }

    /// Tensors the file did not provide keep the values of `current` (a
    /// network's `named_tensors()`), copied, as PyTorch's
    /// `load_state_dict(strict=False)` leaves them: then
    /// `net = Net::from_source(&mut weights)?` updates `net` with what the
    /// file has, and leaves it untouched if anything fails.
    pub fn keep_missing(mut self, current: &[(&str, &Tensor)]) -> Self {
        let mut kept = HashMap::new();
        for (name, t) in current {
            if !self.tensors.contains_key(*name) {
                // `detach` drops the variable flag, so `from_source` makes its
                // own copy: the two networks never share storage.
                kept.insert(name.to_string(), t.detach());
            }
        }
        self.fallback = Fallback::Keep(kept);
        self
    }
}

impl ParamSource for LoadedWeights {
    fn take(&mut self, spec: &ParamSpec) -> Result<Tensor> {
        if let Some(t) = self.tensors.remove(spec.name) {
            return Ok(t);
        }
        match &mut self.fallback {
            Fallback::Init(init) => init.take(spec),
            Fallback::Keep(kept) => kept.remove(spec.name).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "tensor `{}` is neither in the file nor among the kept tensors",
                    spec.name
                ))
                .into()
            }),
        }
    }
}

/// How to write a network's tensors: the float dtype on disk and the
/// header's metadata.
///
/// ```no_run
/// # use netdsl_runtime::{candle::{DType, Tensor, Device}, SaveOptions};
/// # let w = Tensor::zeros(3, DType::F32, &Device::Cpu)?;
/// # let named_tensors = vec![("fc.weight", &w)];
/// SaveOptions::new().dtype(DType::F16).save("half.safetensors", &named_tensors)?;
/// # Ok::<(), netdsl_runtime::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    dtype: Option<DType>,
    metadata: BTreeMap<String, String>,
}

impl SaveOptions {
    /// Each tensor in its own dtype, no metadata: what `save` does.
    pub fn new() -> Self {
        Self::default()
    }

    /// Float tensors are written as `dtype` (`F16`, `BF16`, `F32` or `F64`);
    /// integer buffers (`num_batches_tracked`) stay as they are.
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = Some(dtype);
        self
    }

    /// A `key: value` pair in the header's `__metadata__`.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Writes `tensors` (a network's `named_tensors()`) to `path`: to a
    /// temporary file in the same directory first, then renamed over `path`,
    /// so no reader ever sees a torn file.
    pub fn save(&self, path: impl AsRef<Path>, tensors: &[(&str, &Tensor)]) -> Result<()> {
        let path = path.as_ref();
        if let Some(d) = self.dtype {
            if !matches!(d, DType::F16 | DType::BF16 | DType::F32 | DType::F64) {
                return Err(Error::Format {
                    path: path.to_path_buf(),
                    message: format!("weights can be saved as F16, BF16, F32 or F64, not {d:?}"),
                });
            }
        }
        write_safetensors(path, tensors, self.dtype, &self.metadata)
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
    LoadOptions::new().check(network, path, manifest).map(drop)
}

/// Reads a safetensors weight file for a network, strictly (see
/// [`LoadOptions::load`]).
pub fn load_weights(
    network: &'static str,
    path: impl AsRef<Path>,
    manifest: &[ParamSpec],
    device: &Device,
) -> Result<LoadedWeights> {
    LoadOptions::new().load(network, path, manifest, device)
}

/// Writes named tensors to a safetensors file (PyTorch state_dict names),
/// atomically (see [`SaveOptions::save`]).
pub fn save_weights(path: impl AsRef<Path>, tensors: &[(&str, &Tensor)]) -> Result<()> {
    SaveOptions::new().save(path, tensors)
}
