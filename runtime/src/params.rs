//! Parameters: the manifest a generated network declares and how its tensors
//! are made (initialised, or handed over by a source such as a weight file,
//! see `load`).

use candle_core::{DType, Device, Tensor};

use crate::weights_file::dtype_name;
use crate::{Error, Result, Rng, WeightProblem};

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
    /// `nn.Embedding`'s table `[vocab, dim]`: N(0, 1), with the row
    /// `padding_idx` zeroed.
    Embedding { padding_idx: Option<usize> },
    /// N(0, std²) (`normal_(std = ..)`: ViT's position embedding).
    Normal { std: f64 },
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
            Init::Embedding { .. } => Some(1.0),
            Init::Normal { std } => Some(std),
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
                let mut values = match init.normal_std() {
                    Some(std) => rng.normal_vec(spec.numel(), std as f32),
                    None => {
                        let b = init.uniform_bound().unwrap_or(0.0) as f32;
                        rng.uniform_vec(spec.numel(), -b, b)
                    }
                };
                if let (
                    Init::Embedding {
                        padding_idx: Some(p),
                    },
                    [_, dim],
                ) = (init, spec.shape)
                {
                    if let Some(row) = values.get_mut(p * dim..(p + 1) * dim) {
                        row.fill(0.0);
                    }
                }
                Tensor::from_vec(values, shape, &Device::Cpu)?
                    .to_dtype(spec.dtype)?
                    .to_device(&self.device)?
            }
        };
        Ok(t)
    }
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
