//! 2-D convolution with a fused epilogue, as a candle custom op with its own
//! CPU lowering and backward pass.
//!
//! [`conv2d`] computes `y = act(conv(x, w) + bias[c])` for NCHW input, with
//! PyTorch's semantics and options candle's `conv2d` lacks: a stride and a
//! dilation per axis, and a padding per side.
//!
//! # How it runs
//!
//! - **CPU, f32** (the fast path): the runtime's own lowering to a matrix
//!   product: its own AVX-512 kernel on the weight packed once (kept by
//!   [`PreparedConv`]), else the `gemm` crate (the matrix multiply candle
//!   itself uses). Strided convolutions, and stride-1 ones with few
//!   channels, read their input in place, split once into its stride
//!   phases (the direct lowering); others' patches are gathered
//!   into panels of a few hundred output pixels, sized to stay in L2, and
//!   each panel is one multiply per group written directly into the NCHW
//!   output; bias and activation are applied to that tile right away, while
//!   it is still in cache. 1x1 stride-1 unpadded convolutions multiply the
//!   input in place (no copy); stride-1 convolutions with short output rows
//!   and few channels (LeNet-5's second layer) multiply over the padded
//!   input's whole width, one contiguous copy per patch row; depthwise
//!   convolutions (one input channel per group) run as a direct vectorised
//!   loop (with AVX-512 at horizontal stride 1 or 2, reading each input
//!   plane in place, the padding masked off). Hot elementwise loops are
//!   compiled for AVX2+FMA as well and chosen at run time.
//! - **CPU, other dtypes; CUDA**: candle's own `conv2d`, with explicit zero
//!   padding / kernel dilation / subsampling where the options are not
//!   symmetric, then bias and activation as candle ops.
//!
//! # Gradients
//!
//! The op's backward pass returns the input, weight and bias gradients,
//! through the activation, equal to PyTorch's for every option (including
//! stride 2 with H and W of different parity, where candle's conv backward
//! fails, and batches > 1). It runs on the CPU in f32 whatever the device and
//! dtype (results are moved back). Every reduction is summed in an order
//! fixed by the shapes, so gradients are bit-identical for any thread count.
//! Gradients of arguments that do not track gradients are skipped.
//!
//! # Threads
//!
//! The CPU kernels run on a rayon pool of [`threads()`] threads, which is
//! `candle::utils::get_num_threads()`: `RAYON_NUM_THREADS` if set, else the
//! number of *physical* cores (the same count candle gives its matrix
//! multiply). A call made from inside a rayon pool (`pool.install(..)`) runs
//! on that pool instead, so a caller can choose the count per call.

mod backward;
pub(crate) mod cpu;
#[cfg(target_arch = "x86_64")]
mod depthwise;
mod fallback;
mod geom;
mod kernel;
pub(crate) mod math;
mod transpose;
mod winograd;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::op::BackpropOp;
use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Shape, Storage, Tensor,
};

use crate::Result;
#[cfg(target_arch = "x86_64")]
pub(crate) use cpu::lanes;
use geom::Geom;
pub use transpose::{conv_transpose2d, ConvTranspose2dSpec};

/// The options of a PyTorch `Conv2d`, per axis as `(h, w)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dSpec {
    /// Step between windows `(sh, sw)`; each at least 1.
    pub stride: (usize, usize),
    /// Zero padding `((top, bottom), (left, right))`.
    pub padding: ((usize, usize), (usize, usize)),
    /// Spacing between kernel taps `(dh, dw)`; each at least 1.
    pub dilation: (usize, usize),
    /// Channel groups; must divide `Cin` and `Cout`.
    pub groups: usize,
}

impl Default for Conv2dSpec {
    /// Stride 1, no padding, no dilation, one group.
    fn default() -> Self {
        Conv2dSpec {
            stride: (1, 1),
            padding: ((0, 0), (0, 0)),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dSpec {
    /// The output size `(oh, ow)` for an `h x w` input and a `kh x kw`
    /// kernel, PyTorch's formula per axis:
    /// `out = (in + pad_before + pad_after - dilation * (k - 1) - 1) / stride + 1`;
    /// `None` when the dilated kernel does not fit the padded input.
    pub fn out_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> Option<(usize, usize)> {
        let (s, d) = (self.stride, self.dilation);
        if s.0 == 0 || s.1 == 0 || d.0 == 0 || d.1 == 0 || kh == 0 || kw == 0 {
            return None;
        }
        Some((
            geom::out_len(h, kh, s.0, self.padding.0, d.0)?,
            geom::out_len(w, kw, s.1, self.padding.1, d.1)?,
        ))
    }
}

/// The activation fused after the convolution (and its bias).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Epilogue {
    /// No activation.
    None,
    /// `max(z, 0)`; gradient 0 at 0, as PyTorch.
    Relu,
    /// `z` for `z > 0`, else `slope * z`.
    LeakyRelu(f32),
    /// Exact GELU, `z * Phi(z)` (PyTorch's `nn.GELU()`), within 2e-7.
    Gelu,
    /// `z * sigmoid(z)`.
    Silu,
    /// `1 / (1 + e^-z)`.
    Sigmoid,
    /// `min(max(z, 0), 6)`; gradient 1 strictly between 0 and 6, as PyTorch.
    Relu6,
}

impl Epilogue {
    /// The activation as candle's differentiable ops, on a whole tensor.
    pub(crate) fn on_tensor(self, y: Tensor) -> candle_core::Result<Tensor> {
        match self {
            Epilogue::None => Ok(y),
            Epilogue::Relu => y.relu(),
            Epilogue::LeakyRelu(s) => candle_nn::ops::leaky_relu(&y, s as f64),
            Epilogue::Gelu => y.gelu_erf(),
            Epilogue::Silu => y.silu(),
            Epilogue::Sigmoid => candle_nn::ops::sigmoid(&y),
            Epilogue::Relu6 => y.clamp(0f32, 6f32),
        }
    }
}

/// `y = act(conv(x, w) + bias[c])`: x `[B, Cin, H, W]`, w
/// `[Cout, Cin / groups, kh, kw]`, bias `[Cout]`; y `[B, Cout, oh, ow]` with
/// `(oh, ow)` = [`Conv2dSpec::out_size`]. Differentiable in `x`, `w` and
/// `bias`. See the [module docs](self) for how it runs.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &Conv2dSpec,
    act: Epilogue,
) -> Result<Tensor> {
    Geom::new(x.dims(), w.dims(), bias.map(|b| b.dims()), spec).map_err(candle_core::Error::Msg)?;
    for t in std::iter::once(w).chain(bias) {
        if t.dtype() != x.dtype() {
            return Err(candle_core::Error::Msg(format!(
                "conv2d: x is {:?} but a weight is {:?}",
                x.dtype(),
                t.dtype()
            ))
            .into());
        }
    }
    let op = ConvOp {
        spec: *spec,
        act,
        winograd: None,
        packed: None,
        per_call: w.track_op(),
    };
    Ok(match bias {
        Some(b) => x.apply_op3(w, b, op)?,
        None => x.apply_op2(w, op)?,
    })
}

/// The number of threads the CPU kernels use outside any rayon pool:
/// `candle::utils::get_num_threads()` (`RAYON_NUM_THREADS`, else the
/// physical core count).
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// Runs `f` on the runtime's pool, or where it is if that is already a
/// rayon pool's thread: a generated network's whole `forward` runs here, so
/// every kernel it calls runs where it is instead of handing its work to
/// the pool and waiting for it once per op. (Those two thread switches per
/// op were most of LeNet-5's time at batch 1: 0.14 -> 0.06 ms; MobileNetV2
/// b1 about 0.88x its time, the same binary alternated.)
///
/// The caller hands `f` to the pool and polls for its result for the first
/// 200 us (yielding its core between polls) before it sleeps. A caller
/// asleep in `ThreadPool::install`'s latch had to be woken by the kernel
/// at the end of every call: on a 2-core virtual machine that wake-up and
/// the thread switches around it were about half of LeNet-5 b1's time
/// (0.055-0.073 -> 0.034-0.042 ms; larger networks even).
pub fn run_on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    match pool() {
        Some(p) => handoff(p, f),
        None => f(),
    }
}

/// How long the caller of [`run_on_pool`] polls for the result, yielding
/// its core between polls, before it sleeps until woken.
const POLL: std::time::Duration = std::time::Duration::from_micros(200);

/// Runs `f` on `pool` and waits for it, polling for the first [`POLL`]
/// before it parks.
fn handoff<R: Send>(pool: &rayon::ThreadPool, f: impl FnOnce() -> R + Send) -> R {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, Ordering};
    struct Slot<R> {
        done: AtomicBool,
        result: UnsafeCell<Option<std::thread::Result<R>>>,
    }
    // SAFETY (for Sync): `result` is written once, by the job, before it
    // sets `done` (Release), and read only after `done` is seen (Acquire).
    unsafe impl<R: Send> Sync for Slot<R> {}
    let slot = Slot {
        done: AtomicBool::new(false),
        result: UnsafeCell::new(None),
    };
    let caller = std::thread::current();
    let slot_ref = &slot;
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // SAFETY: see `Slot`; the caller does not read until `done`.
        unsafe { *slot_ref.result.get() = Some(r) };
        slot_ref.done.store(true, Ordering::Release);
        // `slot` may be gone from here on; `caller` is owned.
        caller.unpark();
    });
    // SAFETY: the job borrows `slot` and `f`'s captures from this frame;
    // this function returns only after the job has set `done`, its last
    // access to them.
    let job: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(job) };
    pool.spawn(job);
    let start = std::time::Instant::now();
    while !slot.done.load(Ordering::Acquire) {
        if start.elapsed() < POLL {
            std::thread::yield_now();
        } else {
            std::thread::park();
        }
    }
    // SAFETY: `done` was seen; the job wrote `result` before it.
    match unsafe { (*slot.result.get()).take() } {
        Some(Ok(r)) => r,
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => unreachable!("the job sets its result before `done`"),
    }
}

/// The runtime's pool of [`threads()`] threads (`None` if it could not be
/// built).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads())
            .thread_name(|i| format!("netdsl-conv-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Multiply-adds (or as many element operations) below which a kernel
/// runs all its jobs on the calling thread: about a microsecond of work
/// is not worth a hand-off to a second thread. (LeNet-5 b1, whose last
/// pooling and linear layers are below it, about 0.9x its time; at 2^20,
/// which keeps its convolutions on one thread too, 1.35x slower, and
/// MobileNetV2 b1 1.15x: the pool's workers are awake during a pass, and
/// even 0.2 MFLOP halves on two of them.)
pub(crate) const SERIAL_WORK: usize = 1 << 16;

/// The `with_min_len` of a parallel loop of `jobs` jobs doing `work`
/// multiply-adds in all: every job in one piece (run where the loop is)
/// below [`SERIAL_WORK`], else one job per piece.
pub(crate) fn min_len(work: usize, jobs: usize) -> usize {
    if work < SERIAL_WORK {
        jobs.max(1)
    } else {
        1
    }
}

/// Jobs `0..n` of a kernel doing `work` multiply-adds in all, as a parallel
/// iterator kept in one piece below [`SERIAL_WORK`] ([`min_len`]).
pub(crate) fn par_jobs(n: usize, work: usize) -> rayon::iter::MinLen<rayon::range::Iter<usize>> {
    use rayon::prelude::*;
    (0..n).into_par_iter().with_min_len(min_len(work, n))
}

/// Runs `f` on the runtime's pool, or on the caller's rayon pool if it has
/// one; returns `f`'s result and the number of threads it ran on. Every
/// parallel kernel of the runtime runs here (convolutions, activations,
/// pooling, batch norm, the optimiser's update), so that one set of
/// threads does the work and no second pool's idle workers spin on the
/// same cores.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce(usize) -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f(rayon::current_num_threads());
    }
    match pool() {
        Some(p) => p.install(|| f(p.current_num_threads())),
        None => f(rayon::current_num_threads()),
    }
}

/// A convolution's weights made ready for inference once, to be reused by
/// every [`conv2d_prepared`] call: the weight and bias as given; for a 3x3
/// f32 CPU weight, its Winograd F(4x4, 3x3) transform (36 x `Cout` x `Cin`
/// floats, 4x the weight), made when prepared or, with
/// [`Winograd::AtRunTime`], by the first call whose sizes make it pay;
/// and, made by the first call that needs it, the weight packed for the
/// runtime's matrix kernel (with AVX-512; the size of the weight).
#[derive(Clone, Debug)]
pub struct PreparedConv {
    weight: Tensor,
    bias: Option<Tensor>,
    winograd: Option<Arc<winograd::Transformed>>,
    /// With [`Winograd::AtRunTime`]: the transform, made by the first call
    /// whose sizes make it pay on this CPU ([`netdsl_summary::winograd_pays`],
    /// or [`netdsl_summary::winograd_pays_gathered`] without AVX-512).
    late: Option<Arc<OnceLock<Arc<winograd::Transformed>>>>,
    packed: Arc<kernel::PackCache>,
}

/// When a prepared convolution runs Winograd F(4x4, 3x3) (3x3, stride 1,
/// undilated, ungrouped, f32 on the CPU; any other runs direct whatever
/// this says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winograd {
    /// Never.
    Direct,
    /// Always: its weight is transformed when prepared.
    Always,
    /// At the calls whose sizes make it pay by the cost model the
    /// compiler uses ([`netdsl_summary::winograd_pays`]); the weight is
    /// transformed by the first such call. What generated code asks for
    /// where the batch or the image size is symbolic and the compiler's
    /// assumed sizes (batch 1, side 32) did not make it pay: ResNet-18's
    /// 512-channel 7x7 layers pay at batch 8, not at batch 1. Also
    /// generated where the sizes are known and Winograd pays only against
    /// the gathered lowering of a CPU without AVX-512 (the U-Net's 32- and
    /// 64-channel layers): the model is the CPU's.
    AtRunTime,
}

impl Winograd {
    /// The number generated code passes (0, 1, 2; any other is `Direct`).
    pub fn from_code(code: usize) -> Winograd {
        match code {
            1 => Winograd::Always,
            2 => Winograd::AtRunTime,
            _ => Winograd::Direct,
        }
    }
}

impl PreparedConv {
    /// The weight as given.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias as given.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Whether the Winograd transform was made (a 3x3, f32, CPU weight):
    /// when prepared, or by a call ([`Winograd::AtRunTime`]).
    pub fn has_winograd(&self) -> bool {
        self.winograd.is_some() || self.late.as_ref().is_some_and(|l| l.get().is_some())
    }

    /// The transform this call of geometry `g` runs on, if any: the one
    /// made when prepared, else (with [`Winograd::AtRunTime`]) the late
    /// one, made now if `g`'s sizes make it pay.
    fn transform_for(&self, g: &geom::Geom) -> Result<Option<Arc<winograd::Transformed>>> {
        if self.winograd.is_some() {
            return Ok(self.winograd.clone());
        }
        let Some(late) = &self.late else {
            return Ok(None);
        };
        if let Some(t) = late.get() {
            return Ok(Some(t.clone()));
        }
        let pays = winograd::applies(g) && winograd::pays_here(g);
        if !pays {
            return Ok(None);
        }
        let w = self.weight.flatten_all()?.to_vec1::<f32>()?;
        Ok(Some(
            late.get_or_init(|| Arc::new(winograd::Transformed::new(&w, g.cout, g.cin)))
                .clone(),
        ))
    }
}

/// Prepares `weight` `[Cout, Cin, kh, kw]` and `bias` for
/// [`conv2d_prepared`]; with `winograd`, computes the Winograd transform of
/// a 3x3 f32 weight on the CPU (other weights are kept as they are).
pub fn prepare_conv(weight: Tensor, bias: Option<Tensor>, winograd: bool) -> Result<PreparedConv> {
    let when = if winograd {
        Winograd::Always
    } else {
        Winograd::Direct
    };
    prepare_conv_with(weight, bias, when)
}

/// [`prepare_conv`] with the Winograd choice of [`Winograd`]: its
/// transform made now ([`Winograd::Always`]), never, or by the first call
/// whose sizes make it pay ([`Winograd::AtRunTime`]).
pub fn prepare_conv_with(
    weight: Tensor,
    bias: Option<Tensor>,
    when: Winograd,
) -> Result<PreparedConv> {
    let transformable = matches!(weight.dims(), &[_, _, 3, 3])
        && weight.dtype() == DType::F32
        && weight.device().is_cpu();
    let winograd = match weight.dims() {
        &[cout, cin, 3, 3] if transformable && when == Winograd::Always => {
            let w = weight.detach().flatten_all()?.to_vec1::<f32>()?;
            Some(Arc::new(winograd::Transformed::new(&w, cout, cin)))
        }
        _ => None,
    };
    let late = (transformable && when == Winograd::AtRunTime).then(Arc::default);
    Ok(PreparedConv {
        weight,
        bias,
        winograd,
        late,
        packed: Arc::default(),
    })
}

/// [`prepare_conv`] of a layer's parameters (the bias absent or present),
/// detached: what generated code caches for a convolution without a
/// folded batch norm. `winograd` is 0, 1 or 2 ([`Winograd::from_code`]; a
/// number, so that uses of one block that differ in it share one struct).
pub fn prepare_params<B: crate::layers::MaybeTensor>(
    weight: &Tensor,
    bias: &B,
    winograd: usize,
) -> Result<PreparedConv> {
    prepare_conv_with(
        weight.detach(),
        bias.tensor().map(Tensor::detach),
        Winograd::from_code(winograd),
    )
}

/// [`prepare_conv`] of a layer with its batch norm folded in
/// ([`crate::bn_fold`]); `winograd` as in [`prepare_params`].
pub fn prepare_folded<B: crate::layers::MaybeTensor, A: crate::layers::MaybeTensor>(
    weight: &Tensor,
    bias: &B,
    bn: &crate::layers::BatchNormParams<A>,
    eps: f64,
    winograd: usize,
) -> Result<PreparedConv> {
    let (w, b) = crate::bn_fold(weight, bias, bn, eps)?;
    prepare_conv_with(w, Some(b), Winograd::from_code(winograd))
}

/// [`conv2d`] with prepared weights: a 3x3, stride-1, undilated, ungrouped
/// convolution of f32 CPU data runs Winograd's F(4x4, 3x3) (4x fewer
/// multiplies in the channel products; within about 1e-6 of the direct
/// result relative to the output's magnitude); any other runs as
/// [`conv2d`], on f32 CPU data with the weight packed once for all calls.
/// Gradients, if asked for, are [`conv2d`]'s.
pub fn conv2d_prepared(
    x: &Tensor,
    prepared: &PreparedConv,
    spec: &Conv2dSpec,
    act: Epilogue,
) -> Result<Tensor> {
    let (w, bias) = (&prepared.weight, prepared.bias.as_ref());
    let g = Geom::new(x.dims(), w.dims(), bias.map(|b| b.dims()), spec)
        .map_err(candle_core::Error::Msg)?;
    if x.dtype() != DType::F32 || !x.device().is_cpu() || w.track_op() {
        return conv2d(x, w, bias, spec, act);
    }
    let op = ConvOp {
        spec: *spec,
        act,
        winograd: prepared.transform_for(&g)?,
        packed: Some(prepared.packed.clone()),
        per_call: false,
    };
    Ok(match bias {
        Some(b) => x.apply_op3(w, b, op)?,
        None => x.apply_op2(w, op)?,
    })
}

/// The custom op; `bias` is the third argument when present.
#[derive(Clone, Debug)]
struct ConvOp {
    spec: Conv2dSpec,
    act: Epilogue,
    /// The weight's Winograd transform, used when the geometry allows it.
    winograd: Option<Arc<winograd::Transformed>>,
    /// The prepared weight's packing for the matrix kernel, kept between
    /// calls.
    packed: Option<Arc<kernel::PackCache>>,
    /// Weights that change between calls (training): Winograd with the
    /// weight transformed in this call, where that pays.
    per_call: bool,
}

fn msg(s: String) -> candle_core::Error {
    candle_core::Error::Msg(s)
}

/// A contiguous copy of what `l` describes.
fn contiguous<S>(s: &S, l: &Layout) -> candle_core::Result<S>
where
    S: BackendStorage,
    S::Device: BackendDevice<Storage = S>,
{
    let mut dst = s.device().zeros_impl(l.shape(), s.dtype())?;
    s.copy_strided_src(&mut dst, 0, l)?;
    Ok(dst)
}

/// The f32 data `l` describes, borrowed when contiguous.
fn f32_data<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<Option<Cow<'a, [f32]>>> {
    let CpuStorage::F32(v) = s else {
        return Ok(None);
    };
    Ok(Some(match l.contiguous_offsets() {
        Some((a, b)) => Cow::Borrowed(&v[a..b]),
        None => match contiguous(s, l)? {
            CpuStorage::F32(v) => Cow::Owned(v),
            _ => return Ok(None),
        },
    }))
}

impl ConvOp {
    fn geom(&self, x: &[usize], w: &[usize], b: Option<&[usize]>) -> candle_core::Result<Geom> {
        Geom::new(x, w, b, &self.spec).map_err(msg)
    }

    fn out_shape(g: &Geom) -> Shape {
        Shape::from((g.b, g.cout, g.oh, g.ow))
    }

    fn cpu(&self, args: &[(&CpuStorage, &Layout)]) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.geom(
            args[0].1.dims(),
            args[1].1.dims(),
            args.get(2).map(|a| a.1.dims()),
        )?;
        let mut data = Vec::with_capacity(args.len());
        for (s, l) in args {
            match f32_data(s, l)? {
                Some(d) => data.push(d),
                None => {
                    return self.via_tensors(args, Storage::Cpu, |s| match s {
                        Storage::Cpu(s) => Some(s),
                        _ => None,
                    })
                }
            }
        }
        let act = self.act;
        let bias = data.get(2).map(|b| &b[..]);
        let y = match self.winograd.as_ref().and_then(|u| u.for_geom(&g)) {
            Some(u) => on_pool(|_| winograd::forward(&g, &data[0], u, bias, act)),
            None if self.winograd.is_none() && self.per_call && winograd::pays_per_call(&g) => {
                on_pool(|_| {
                    winograd::with_transformed(&data[1], g.cout, g.cin, |u| {
                        winograd::forward(&g, &data[0], winograd::U::Raw(u), bias, act)
                    })
                })
            }
            _ => on_pool(|n| {
                let packed = self.packed.as_deref();
                cpu::forward(&g, &data[0], &data[1], bias, act, n, packed)
            }),
        };
        Ok((CpuStorage::F32(y), Self::out_shape(&g)))
    }

    /// The forward pass through candle's own tensor operations.
    fn via_tensors<S>(
        &self,
        args: &[(&S, &Layout)],
        wrap: fn(S) -> Storage,
        unwrap: fn(&Storage) -> Option<&S>,
    ) -> candle_core::Result<(S, Shape)>
    where
        S: BackendStorage,
        S::Device: BackendDevice<Storage = S>,
    {
        let mut ts = Vec::with_capacity(args.len());
        for (s, l) in args {
            let st = wrap(contiguous(*s, l)?);
            ts.push(Tensor::from_storage(
                st,
                l.shape().clone(),
                BackpropOp::none(),
                false,
            ));
        }
        let y = fallback::conv2d(&ts[0], &ts[1], ts.get(2), &self.spec, self.act)?;
        let (st, l) = y.storage_and_layout();
        let s = unwrap(&st).ok_or_else(|| msg("conv2d: result on another device".into()))?;
        Ok((contiguous(s, l)?, l.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.geom(x.dims(), w.dims(), bias.map(|b| b.dims()))?;
        // Saved tensors read in place where they are f32 CPU data.
        use crate::host::HostF32;
        let (xh, wh, gh) = (HostF32::of(x)?, HostF32::of(w)?, HostF32::of(gy)?);
        let (xv, wv, gv) = (xh.slice(), wh.slice(), gh.slice());
        let act = self.act;
        let want_b = bias.is_some_and(|b| b.track_op());
        let (dx, dw, db) = on_pool(|n| -> candle_core::Result<_> {
            let mut chained = Vec::new();
            let dz: &[f32] = if act == Epilogue::None {
                gv
            } else {
                chained.extend_from_slice(gv);
                let vh;
                let recomputed;
                let v: &[f32] = if math::derivative_from_output(act) {
                    vh = HostF32::of(y)?;
                    vh.slice()
                } else {
                    let bh = bias.map(HostF32::of).transpose()?;
                    recomputed = cpu::forward(
                        &g,
                        xv,
                        wv,
                        bh.as_ref().map(|b| b.slice()),
                        Epilogue::None,
                        n,
                        None,
                    );
                    &recomputed
                };
                use rayon::prelude::*;
                chained
                    .par_chunks_mut(1 << 14)
                    .zip(v.par_chunks(1 << 14))
                    .for_each(|(d, v)| math::chain(act, v, d));
                &chained
            };
            let dx = x.track_op().then(|| backward::input_grad(&g, dz, wv));
            let dw = w.track_op().then(|| backward::weight_grad(&g, dz, xv));
            let db = want_b.then(|| backward::bias_grad(&g, dz));
            Ok((dx, dw, db))
        })?;
        drop((xh, wh, gh));
        let back = |v: Option<Vec<f32>>, like: &Tensor| -> candle_core::Result<Option<Tensor>> {
            v.map(|v| {
                Tensor::from_vec(v, like.shape(), &Device::Cpu)?
                    .to_dtype(like.dtype())?
                    .to_device(like.device())
            })
            .transpose()
        };
        let db = match bias {
            Some(b) => back(db, b)?,
            None => None,
        };
        Ok((back(dx, x)?, back(dw, w)?, db))
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "netdsl-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.cpu(&[(s1, l1), (s2, l2)])
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.via_tensors(&[(s1, l1), (s2, l2)], Storage::Cuda, |s| match s {
            Storage::Cuda(s) => Some(s),
            _ => None,
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = ConvOp::bwd(self, x, w, None, y, gy)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "netdsl-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.cpu(&[(s1, l1), (s2, l2), (s3, l3)])
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.via_tensors(
            &[(s1, l1), (s2, l2), (s3, l3)],
            Storage::Cuda,
            |s| match s {
                Storage::Cuda(s) => Some(s),
                _ => None,
            },
        )
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        ConvOp::bwd(self, x, w, Some(b), y, gy)
    }
}

#[cfg(test)]
mod handoff_tests {
    use super::run_on_pool;

    #[test]
    fn runs_on_the_pool_with_borrowed_data() {
        let data: Vec<u64> = (1..=100).collect();
        let (sum, on_pool) = run_on_pool(|| {
            (
                data.iter().sum::<u64>(),
                rayon::current_thread_index().is_some(),
            )
        });
        assert_eq!(sum, 5050);
        assert!(on_pool, "the closure ran on the caller's thread");
        // From inside the pool it runs where it is.
        let nested = run_on_pool(|| run_on_pool(|| rayon::current_thread_index().is_some()));
        assert!(nested);
    }

    #[test]
    fn a_job_longer_than_the_polling_wakes_its_caller() {
        let got = run_on_pool(|| {
            std::thread::sleep(super::POLL * 5);
            7
        });
        assert_eq!(got, 7);
    }

    #[test]
    fn a_panic_reaches_the_caller_with_its_message() {
        let err = std::panic::catch_unwind(|| run_on_pool(|| -> u32 { panic!("inside the pool") }))
            .expect_err("the panic was lost");
        assert_eq!(err.downcast_ref::<&str>(), Some(&"inside the pool"));
        // The pool still works after it.
        assert_eq!(run_on_pool(|| 3), 3);
    }

    #[test]
    fn callers_on_several_threads_each_get_their_own_result() {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u64)
                .map(|t| {
                    s.spawn(move || {
                        (0..200u64)
                            .map(|i| run_on_pool(|| t * 1000 + i) - t * 1000)
                            .sum::<u64>()
                    })
                })
                .collect();
            for h in handles {
                assert_eq!(h.join().unwrap(), (0..200).sum::<u64>());
            }
        });
    }
}
