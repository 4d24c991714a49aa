//! safetensors files, read and written without trusting them or tearing
//! them.
//!
//! Reading validates the whole header before any tensor data is touched
//! (lengths, dtypes, offsets against shapes and against the file), so a
//! malformed file is refused whole with an error naming the tensor. Each
//! tensor is then read with one positioned read straight into the buffer its
//! tensor keeps (no copy of the file in memory, no second copy of a tensor;
//! a half-precision tensor is widened element by element into its f32
//! buffer). Writing goes to a temporary file in the same directory, which is
//! synced and then renamed over the target, so a reader never sees half a
//! file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor, Var};
use half::{bf16, f16};
use safetensors::Dtype;

use crate::{Error, FileProblem, Result};

/// `$v` (an iterator of one float type) as a [`Host`] of dtype `$want`.
macro_rules! to_float {
    ($v:expr, $want:expr) => {
        match $want {
            DType::F32 => Some(Host::F32(cast($v))),
            DType::F64 => Some(Host::F64(cast($v))),
            DType::F16 => Some(Host::F16(cast($v))),
            DType::BF16 => Some(Host::BF16(cast($v))),
            _ => None,
        }
    };
}

/// The largest header accepted (safetensors' own limit): a corrupt length
/// must not make us allocate gigabytes.
const MAX_HEADER: u64 = 100_000_000;

/// One tensor of a file, as its header describes it (already validated).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range within the data section.
    pub start: u64,
    pub end: u64,
}

/// An open safetensors file whose header has been checked whole.
#[derive(Debug)]
pub(crate) struct WeightsFile {
    pub path: PathBuf,
    file: File,
    data_start: u64,
    /// By name.
    pub entries: BTreeMap<String, Entry>,
    pub metadata: BTreeMap<String, String>,
}

impl WeightsFile {
    /// Opens `path` and validates its header against itself and the file's
    /// length. Reads only the header.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        };
        let bad = |problem| Error::Malformed {
            path: path.to_path_buf(),
            problem,
        };
        let mut file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        if file_len < 8 {
            return Err(bad(FileProblem::TooShort { len: file_len }));
        }
        let mut n = [0u8; 8];
        file.read_exact(&mut n).map_err(io)?;
        let header_len = u64::from_le_bytes(n);
        let available = file_len - 8;
        if header_len > available || header_len > MAX_HEADER {
            return Err(bad(FileProblem::HeaderPastEnd {
                header_len,
                available,
            }));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io)?;
        let data_len = available - header_len;
        let (entries, metadata) = parse_header(&header, data_len).map_err(bad)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            data_start: 8 + header_len,
            entries,
            metadata,
        })
    }

    /// Reads `entry`'s data as a tensor of dtype `want` on `device`
    /// (converting between float dtypes), as a candle variable when
    /// `as_var` (so a network's constructor keeps it without a copy).
    /// With `check_finite`, a NaN or infinity (after conversion) is an error.
    pub fn read(
        &mut self,
        entry: &Entry,
        want: DType,
        device: &Device,
        as_var: bool,
        check_finite: bool,
    ) -> Result<Tensor> {
        let host = self.read_host(entry, want)?.ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "tensor `{}`: cannot convert {:?} to {want:?}",
                entry.name, entry.dtype
            ))
        })?;
        if check_finite {
            if let Some((index, value)) = host.first_non_finite() {
                return Err(Error::Malformed {
                    path: self.path.clone(),
                    problem: FileProblem::NonFinite {
                        tensor: entry.name.clone(),
                        index,
                        value,
                    },
                });
            }
        }
        host.into_tensor(&entry.shape, device, as_var)
    }

    /// The tensor's elements in `want` (`None` if the file's dtype does not
    /// convert to it), read with one read into their buffer; a conversion
    /// then makes one more, of the converted values.
    fn read_host(&mut self, entry: &Entry, want: DType) -> Result<Option<Host>> {
        let numel: usize = entry.shape.iter().product();
        let host = match entry.dtype {
            Dtype::F32 => Host::F32(self.read_vec(entry, numel)?),
            Dtype::F64 => Host::F64(self.read_vec(entry, numel)?),
            // f16 -> f64 -> f16 is exact, so one path serves every `want`.
            Dtype::F16 => {
                let bits: Vec<u16> = self.read_vec(entry, numel)?;
                return Ok(to_float!(bits.into_iter().map(f16::from_bits), want));
            }
            Dtype::BF16 => {
                let bits: Vec<u16> = self.read_vec(entry, numel)?;
                return Ok(to_float!(bits.into_iter().map(bf16::from_bits), want));
            }
            Dtype::U8 => Host::U8(self.read_vec(entry, numel)?),
            Dtype::U32 => Host::U32(self.read_vec(entry, numel)?),
            Dtype::I16 => Host::I16(self.read_vec(entry, numel)?),
            Dtype::I32 => Host::I32(self.read_vec(entry, numel)?),
            Dtype::I64 => Host::I64(self.read_vec(entry, numel)?),
            _ => return Ok(None),
        };
        Ok(host.convert(want))
    }

    fn read_vec<T: bytemuck::Pod>(&mut self, entry: &Entry, numel: usize) -> Result<Vec<T>> {
        let mut v = vec![T::zeroed(); numel];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut v);
        // `open` checked this against the header; a file that shrank since
        // ends in an I/O error below, not a short tensor.
        debug_assert_eq!(bytes.len() as u64, entry.end - entry.start);
        let io = |source| Error::Io {
            action: "read",
            path: self.path.clone(),
            source,
        };
        self.file
            .seek(SeekFrom::Start(self.data_start + entry.start))
            .map_err(io)?;
        self.file.read_exact(bytes).map_err(io)?;
        if cfg!(target_endian = "big") {
            for x in bytes.chunks_exact_mut(std::mem::size_of::<T>()) {
                x.reverse();
            }
        }
        Ok(v)
    }
}

/// A header's tensors by name, and its `__metadata__`.
type Header = (BTreeMap<String, Entry>, BTreeMap<String, String>);

/// Parses and validates a header: every entry's dtype, shape and offsets,
/// then the offsets of all entries together against the data section.
fn parse_header(header: &[u8], data_len: u64) -> std::result::Result<Header, FileProblem> {
    let text = std::str::from_utf8(header).map_err(|e| FileProblem::Header {
        message: format!("not UTF-8: {e}"),
    })?;
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text.trim_end_matches(' ')).map_err(|e| FileProblem::Header {
            message: format!("not a JSON object: {e}"),
        })?;
    let mut entries = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, value) in json {
        if name == "__metadata__" {
            let meta: BTreeMap<String, String> =
                serde_json::from_value(value).map_err(|e| FileProblem::Header {
                    message: format!("`__metadata__` is not a map of strings: {e}"),
                })?;
            metadata = meta;
            continue;
        }
        let entry = parse_entry(&name, value)?;
        entries.insert(name, entry);
    }
    check_layout(&entries, data_len)?;
    Ok((entries, metadata))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

fn parse_entry(name: &str, value: serde_json::Value) -> std::result::Result<Entry, FileProblem> {
    let raw: RawEntry = serde_json::from_value(value).map_err(|e| FileProblem::Entry {
        tensor: name.to_string(),
        message: e.to_string(),
    })?;
    let dtype: Dtype = serde_json::from_value(serde_json::Value::String(raw.dtype.clone()))
        .map_err(|_| FileProblem::UnknownDType {
            tensor: name.to_string(),
            dtype: raw.dtype.clone(),
        })?;
    let (start, end) = raw.data_offsets;
    let byte_length = |expected| FileProblem::ByteLength {
        tensor: name.to_string(),
        dtype: raw.dtype.clone(),
        shape: raw.shape.clone(),
        expected,
        found: end.saturating_sub(start),
    };
    let bits = raw
        .shape
        .iter()
        .try_fold(dtype.bitsize() as u64, |acc, &d| acc.checked_mul(d as u64));
    let expected = match bits {
        Some(bits) if bits % 8 == 0 => bits / 8,
        // The shape overflows u64 (reported as needing u64::MAX bytes), or
        // ends in part of a byte.
        Some(bits) => return Err(byte_length(bits.div_ceil(8))),
        None => return Err(byte_length(u64::MAX)),
    };
    if start <= end && end - start != expected {
        return Err(byte_length(expected));
    }
    Ok(Entry {
        name: name.to_string(),
        dtype,
        shape: raw.shape,
        start,
        end,
    })
}

/// Offsets against each other and the data section. The header tiling
/// `[0, end)` back to back with the file shorter than `end` is a file cut
/// short (`Truncated`); any other range past the data is `OffsetOutOfRange`.
fn check_layout(
    entries: &BTreeMap<String, Entry>,
    data_len: u64,
) -> std::result::Result<(), FileProblem> {
    let out_of_range = |e: &Entry| FileProblem::OffsetOutOfRange {
        tensor: e.name.clone(),
        start: e.start,
        end: e.end,
        data_len,
    };
    if let Some(e) = entries.values().find(|e| e.start > e.end) {
        return Err(out_of_range(e));
    }
    let mut by_offset: Vec<&Entry> = entries.values().collect();
    by_offset.sort_by_key(|e| (e.start, e.end));
    // Empty tensors occupy no bytes and overlap nothing.
    let mut prev: Option<&Entry> = None;
    for e in by_offset.iter().filter(|e| e.end > e.start) {
        if let Some(p) = prev {
            if e.start < p.end {
                return Err(FileProblem::Overlap {
                    tensor: p.name.clone(),
                    start: p.start,
                    end: p.end,
                    other: e.name.clone(),
                    other_start: e.start,
                    other_end: e.end,
                });
            }
        }
        prev = Some(e);
    }
    let Some(first_past) = by_offset.iter().find(|e| e.end > data_len) else {
        return Ok(());
    };
    let contiguous = by_offset
        .iter()
        .try_fold(0u64, |at, e| (e.start == at).then_some(e.end))
        .is_some();
    if contiguous {
        Err(FileProblem::Truncated {
            tensor: first_past.name.clone(),
            end: first_past.end,
            data_len,
        })
    } else {
        Err(out_of_range(first_past))
    }
}

/// A tensor's elements on the host, in one of the dtypes netdsl loads.
enum Host {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    U8(Vec<u8>),
    U32(Vec<u32>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// The float dtypes, converted through f64, which holds each of them
/// exactly, so a conversion rounds once.
trait Float: Copy {
    fn to_f64(self) -> f64;
    fn from_f64(x: f64) -> Self;
}

impl Float for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl Float for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}

impl Float for f16 {
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn from_f64(x: f64) -> Self {
        f16::from_f64(x)
    }
}

impl Float for bf16 {
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    fn from_f64(x: f64) -> Self {
        bf16::from_f64(x)
    }
}

fn cast<S: Float, T: Float>(v: impl IntoIterator<Item = S>) -> Vec<T> {
    v.into_iter().map(|x| T::from_f64(x.to_f64())).collect()
}

fn first_non_finite<T: Float>(v: &[T]) -> Option<(usize, f64)> {
    v.iter()
        .map(|x| x.to_f64())
        .enumerate()
        .find(|(_, x)| !x.is_finite())
}

impl Host {
    fn dtype(&self) -> DType {
        match self {
            Host::F32(_) => DType::F32,
            Host::F64(_) => DType::F64,
            Host::F16(_) => DType::F16,
            Host::BF16(_) => DType::BF16,
            Host::U8(_) => DType::U8,
            Host::U32(_) => DType::U32,
            Host::I16(_) => DType::I16,
            Host::I32(_) => DType::I32,
            Host::I64(_) => DType::I64,
        }
    }

    /// The same elements in `want`: unchanged if it is already that dtype,
    /// converted between float dtypes, `None` otherwise.
    fn convert(self, want: DType) -> Option<Host> {
        if self.dtype() == want {
            return Some(self);
        }
        match self {
            Host::F32(v) => to_float!(v, want),
            Host::F64(v) => to_float!(v, want),
            Host::F16(v) => to_float!(v, want),
            Host::BF16(v) => to_float!(v, want),
            _ => None,
        }
    }

    fn first_non_finite(&self) -> Option<(usize, f64)> {
        match self {
            Host::F32(v) => first_non_finite(v),
            Host::F64(v) => first_non_finite(v),
            Host::F16(v) => first_non_finite(v),
            Host::BF16(v) => first_non_finite(v),
            _ => None,
        }
    }

    /// The tensor that takes over the buffer (on the CPU; copied once to
    /// another device).
    fn into_tensor(self, shape: &[usize], device: &Device, as_var: bool) -> Result<Tensor> {
        fn make<T: candle_core::WithDType>(
            v: Vec<T>,
            shape: &[usize],
            device: &Device,
            as_var: bool,
        ) -> Result<Tensor> {
            Ok(if as_var {
                Var::from_vec(v, shape, device)?.into_inner()
            } else {
                Tensor::from_vec(v, shape, device)?
            })
        }
        match self {
            Host::F32(v) => make(v, shape, device, as_var),
            Host::F64(v) => make(v, shape, device, as_var),
            Host::F16(v) => make(v, shape, device, as_var),
            Host::BF16(v) => make(v, shape, device, as_var),
            Host::U8(v) => make(v, shape, device, as_var),
            Host::U32(v) => make(v, shape, device, as_var),
            Host::I16(v) => make(v, shape, device, as_var),
            Host::I32(v) => make(v, shape, device, as_var),
            Host::I64(v) => make(v, shape, device, as_var),
        }
    }
}

/// The safetensors name of a candle dtype.
pub(crate) fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::I16 => "I16",
        DType::U32 => "U32",
        DType::U8 => "U8",
        _ => "other",
    }
}

/// The candle dtype a file dtype is read into as it is, if candle has one.
pub(crate) fn candle_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::U8 => DType::U8,
        Dtype::U32 => DType::U32,
        Dtype::I16 => DType::I16,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        _ => return None,
    })
}

/// Writes a file through `write` (given a temporary path in the same
/// directory), syncs it and renames it over `path`: readers see the old file
/// or the new one, never a torn one. The temporary file is removed on error.
pub(crate) fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io = |source| Error::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    let tmp = path.with_file_name(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write(&tmp)
        .and_then(|()| File::open(&tmp).and_then(|f| f.sync_all()).map_err(io))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `tensors` as safetensors to `path` atomically (see
/// [`write_atomically`]): float tensors as `float_dtype` when given, the
/// others as they are, `metadata` in the header. One tensor at a time is
/// converted to bytes.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &[(&str, &Tensor)],
    float_dtype: Option<DType>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let out_dtype = |t: &Tensor| match float_dtype {
        Some(d) if t.dtype().is_float() => d,
        _ => t.dtype(),
    };
    let mut sorted: Vec<(&str, &Tensor)> = tensors.to_vec();
    sorted.sort_by_key(|(name, _)| *name);
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut at = 0u64;
    for (name, t) in &sorted {
        let dtype = out_dtype(t);
        let bytes = (t.elem_count() * dtype.size_in_bytes()) as u64;
        header.insert(
            name.to_string(),
            serde_json::json!({
                "dtype": dtype_name(dtype),
                "shape": t.dims(),
                "data_offsets": [at, at + bytes],
            }),
        );
        at += bytes;
    }
    let mut header = serde_json::to_string(&header).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: format!("cannot serialise the header: {e}"),
    })?;
    // The data section starts 8-byte aligned, as safetensors writes it.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    write_atomically(path, |tmp| {
        let io = |source| Error::Io {
            action: "write",
            path: tmp.to_path_buf(),
            source,
        };
        let mut w = std::io::BufWriter::new(File::create(tmp).map_err(io)?);
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(header.as_bytes()).map_err(io)?;
        for (_, t) in &sorted {
            let t = t
                .detach()
                .to_dtype(out_dtype(t))?
                .to_device(&Device::Cpu)?
                .flatten_all()?;
            with_le_bytes(&t, |b| w.write_all(b))?.map_err(io)?;
        }
        w.flush().map_err(io)
    })
}

/// Hands a flat CPU tensor's elements to `f` as little-endian bytes (a
/// view of its one host copy on little-endian machines; half-precision
/// values go through their bits).
fn with_le_bytes<R>(t: &Tensor, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    fn emit<T: bytemuck::Pod, R>(v: &[T], f: impl FnOnce(&[u8]) -> R) -> R {
        if cfg!(target_endian = "big") {
            let mut b: Vec<u8> = bytemuck::cast_slice(v).to_vec();
            for x in b.chunks_exact_mut(std::mem::size_of::<T>()) {
                x.reverse();
            }
            f(&b)
        } else {
            f(bytemuck::cast_slice(v))
        }
    }
    Ok(match t.dtype() {
        DType::F32 => emit(&t.to_vec1::<f32>()?, f),
        DType::F64 => emit(&t.to_vec1::<f64>()?, f),
        DType::F16 => {
            let bits: Vec<u16> = t.to_vec1::<f16>()?.into_iter().map(f16::to_bits).collect();
            emit(&bits, f)
        }
        DType::BF16 => {
            let bits: Vec<u16> = t
                .to_vec1::<bf16>()?
                .into_iter()
                .map(bf16::to_bits)
                .collect();
            emit(&bits, f)
        }
        DType::U8 => emit(&t.to_vec1::<u8>()?, f),
        DType::U32 => emit(&t.to_vec1::<u32>()?, f),
        DType::I16 => emit(&t.to_vec1::<i16>()?, f),
        DType::I32 => emit(&t.to_vec1::<i32>()?, f),
        DType::I64 => emit(&t.to_vec1::<i64>()?, f),
        other => {
            return Err(candle_core::Error::Msg(format!("cannot save a {other:?} tensor")).into())
        }
    })
}
