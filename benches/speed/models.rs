//! The Rust side of the speed harness: the workload list (read from
//! `workloads.json`, the one list both sides use), each workload built from
//! a generated network, and each network's layers as a plan of the
//! runtime's own op functions, for the per-layer breakdown.
//!
//! Included by `benches/speed/main.rs` and by `tests/speed_workloads.rs`
//! (which checks that every listed workload builds here), after the
//! `network!` definitions it names.

use super::*;
use netdsl::candle::{Device, Tensor};
use netdsl::train::{cross_entropy, Optimizer, Sgd, SgdConfig};
use netdsl_runtime::{Conv2dSpec, ConvTranspose2dSpec, Epilogue, Pool2d};

pub type R<T> = Result<T, Box<dyn std::error::Error>>;

/// The workloads, in the harness's order.
pub const WORKLOADS_JSON: &str = include_str!("workloads.json");

/// The models this side implements (`model` in `workloads.json`).
pub const MODELS: &[&str] = &[
    "lenet",
    "alexnet",
    "vgg16",
    "resnet18",
    "mobilenet_v2",
    "restore_unet",
];

#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub name: String,
    pub model: String,
    pub input: Vec<usize>,
    pub train: bool,
}

/// The workloads listed in `workloads.json`.
pub fn workloads() -> R<Vec<Workload>> {
    let v: serde_json::Value = serde_json::from_str(WORKLOADS_JSON)?;
    let list = v["workloads"]
        .as_array()
        .ok_or("workloads.json: no `workloads` array")?;
    let mut out = Vec::new();
    for w in list {
        let field = |k: &str| {
            w[k].as_str()
                .ok_or(format!("workloads.json: `{k}` missing in {w}"))
        };
        let kind = field("kind")?;
        if kind != "infer" && kind != "train" {
            return Err(format!("workloads.json: kind `{kind}` is neither infer nor train").into());
        }
        let input = w["input"]
            .as_array()
            .ok_or(format!("workloads.json: `input` missing in {w}"))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .map(|d| d as usize)
                    .ok_or("input dims are whole numbers")
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Workload {
            name: field("name")?.to_string(),
            model: field("model")?.to_string(),
            input,
            train: kind == "train",
        });
    }
    Ok(out)
}

/// One timed step of a workload; returns when its result is computed.
pub type Step = Box<dyn FnMut() -> R<()>>;

/// Inference: `forward` in inference mode. Training: forward, cross-entropy
/// against fixed targets, backward and an SGD step (momentum 0.9), as
/// `scripts/speed.py` does in PyTorch.
macro_rules! step {
    ($ty:ty, $w:expr, $dev:expr) => {{
        let mut net = <$ty>::new_seeded(0, $dev)?;
        let x = Tensor::rand(0f32, 1.0, $w.input.as_slice(), $dev)?;
        if $w.train {
            net.train();
            let classes = net.forward(&x)?.dim(1)?;
            let n = $w.input[0];
            let y: Vec<u32> = (0..n).map(|i| ((i * 7) % classes) as u32).collect();
            let y = Tensor::from_vec(y, n, $dev)?;
            let cfg = SgdConfig {
                lr: 0.01,
                momentum: 0.9,
                ..Default::default()
            };
            let mut opt = Sgd::new(net.vars()?, cfg)?;
            Box::new(move || {
                let loss = cross_entropy(&net.forward(&x)?, &y, 0.0)?;
                opt.backward_step(&loss)?;
                Ok(())
            }) as Step
        } else {
            Box::new(move || {
                net.forward(&x)?;
                Ok(())
            }) as Step
        }
    }};
}

/// Builds a workload: the network (seeded weights), its input, and for
/// training the targets and the optimiser.
pub fn build(w: &Workload, dev: &Device) -> R<Step> {
    Ok(match w.model.as_str() {
        "lenet" => step!(LeNet, w, dev),
        "alexnet" => step!(AlexNet, w, dev),
        "vgg16" => step!(Vgg16, w, dev),
        "resnet18" => step!(ResNet18, w, dev),
        "mobilenet_v2" => step!(MobileNetV2, w, dev),
        "restore_unet" if !w.train => step!(Restorer, w, dev),
        m => return Err(format!("{}: no model `{m}` for this kind here", w.name).into()),
    })
}

/// How a convolution row ends: nothing, ReLU (in the runtime's epilogue),
/// or ReLU6 (a separate pass in the generated code).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    None,
    Relu,
    Relu6,
}

/// One layer as the generated inference code runs it.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Convolution with bias (a batch norm after it, `bn`, is folded into
    /// it on our side; PyTorch eager runs it).
    Conv {
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
        bn: bool,
        act: Act,
    },
    ConvT {
        k: usize,
        stride: usize,
    },
    MaxPool {
        k: usize,
        stride: usize,
        pad: usize,
    },
    AdaptiveAvgPool {
        out: usize,
    },
    /// Matmul, bias, optional ReLU.
    Linear {
        relu: bool,
    },
    /// Elementwise sum of two tensors, optional ReLU.
    Add {
        relu: bool,
    },
    /// Concatenation along channels.
    Cat,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Vec<usize>>,
    pub out: Vec<usize>,
}

fn elems(s: &[usize]) -> u64 {
    s.iter().map(|&d| d as u64).product()
}

impl Row {
    fn cin(&self) -> usize {
        self.inputs[0][1]
    }

    /// The weight's shape (none for ops without parameters).
    pub fn weight_shape(&self) -> Option<Vec<usize>> {
        let cout = self.out[1];
        match self.op {
            Op::Conv { k, groups, .. } => Some(vec![cout, self.cin() / groups, k, k]),
            Op::ConvT { k, .. } => Some(vec![self.cin(), cout, k, k]),
            Op::Linear { .. } => Some(vec![cout, self.inputs[0][1]]),
            _ => None,
        }
    }

    /// Floating-point operations (a multiply-add is 2; pooling counts one
    /// per window element, elementwise ops one per element and operation).
    pub fn flops(&self) -> u64 {
        let out = elems(&self.out);
        match self.op {
            Op::Conv { k, groups, act, .. } => {
                let macs = out * (self.cin() / groups) as u64 * (k * k) as u64;
                2 * macs + out * (1 + (act != Act::None) as u64)
            }
            Op::ConvT { k, .. } => 2 * elems(&self.inputs[0]) * (self.out[1] * k * k) as u64 + out,
            Op::MaxPool { k, .. } => out * (k * k) as u64,
            Op::AdaptiveAvgPool { .. } => elems(&self.inputs[0]),
            Op::Linear { relu } => 2 * out * self.inputs[0][1] as u64 + out * (1 + relu as u64),
            Op::Add { relu } => out * (1 + relu as u64),
            Op::Cat => 0,
        }
    }

    /// Bytes moved at least once: inputs, weights, bias and output, f32.
    pub fn bytes(&self) -> u64 {
        let w = self
            .weight_shape()
            .map(|s| elems(&s) + s[0] as u64)
            .unwrap_or(0);
        4 * (self.inputs.iter().map(|s| elems(s)).sum::<u64>() + w + elems(&self.out))
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (kind, args) = match &self.op {
            Op::Conv {
                k,
                stride,
                pad,
                groups,
                bn,
                act,
            } => (
                "conv",
                serde_json::json!({"k": k, "stride": stride, "pad": pad, "groups": groups, "bn": bn,
                    "act": match act { Act::None => "none", Act::Relu => "relu", Act::Relu6 => "relu6" }}),
            ),
            Op::ConvT { k, stride } => ("convT", serde_json::json!({"k": k, "stride": stride})),
            Op::MaxPool { k, stride, pad } => (
                "maxpool",
                serde_json::json!({"k": k, "stride": stride, "pad": pad}),
            ),
            Op::AdaptiveAvgPool { out } => ("adaptive_avg_pool", serde_json::json!({"out": out})),
            Op::Linear { relu } => ("linear", serde_json::json!({"relu": relu})),
            Op::Add { relu } => ("add", serde_json::json!({"relu": relu})),
            Op::Cat => ("cat", serde_json::json!({})),
        };
        serde_json::json!({
            "name": self.name, "op": kind, "args": args, "inputs": self.inputs, "out": self.out,
            "weight": self.weight_shape(), "flops": self.flops(), "bytes": self.bytes(),
        })
    }

    /// The row as the runtime runs it, on random inputs and weights of its
    /// shapes: the ops the generated `forward` calls for this layer.
    pub fn runner(&self, dev: &Device) -> R<Step> {
        let rand = |s: &[usize]| Tensor::rand(-1f32, 1.0, s, dev);
        let xs: Vec<Tensor> = self
            .inputs
            .iter()
            .map(|s| rand(s))
            .collect::<Result<_, _>>()?;
        let w = self.weight_shape().map(|s| rand(&s)).transpose()?;
        let b = rand(&[self.out[1]])?;
        let x = xs[0].clone();
        Ok(match self.op.clone() {
            Op::Conv {
                k: _,
                stride,
                pad,
                groups,
                act,
                ..
            } => {
                let w = w.ok_or("conv without weight")?;
                let spec = Conv2dSpec {
                    stride: (stride, stride),
                    padding: ((pad, pad), (pad, pad)),
                    dilation: (1, 1),
                    groups,
                };
                Box::new(move || {
                    let epi = if act == Act::Relu {
                        Epilogue::Relu
                    } else {
                        Epilogue::None
                    };
                    let y = netdsl_runtime::conv2d(&x, &w, Some(&b), &spec, epi)?;
                    if act == Act::Relu6 {
                        netdsl_runtime::relu6(&y)?;
                    }
                    Ok(())
                })
            }
            Op::ConvT { stride, .. } => {
                let w = w.ok_or("convT without weight")?;
                let spec = ConvTranspose2dSpec {
                    stride: (stride, stride),
                    ..Default::default()
                };
                Box::new(move || {
                    netdsl_runtime::conv_transpose2d(&x, &w, Some(&b), &spec)?;
                    Ok(())
                })
            }
            Op::MaxPool { k, stride, pad } => {
                let p = Pool2d {
                    kernel: (k, k),
                    stride: (stride, stride),
                    padding: (pad, pad),
                    dilation: (1, 1),
                    ceil_mode: false,
                    count_include_pad: true,
                };
                Box::new(move || {
                    netdsl_runtime::max_pool2d(&x, &p)?;
                    Ok(())
                })
            }
            Op::AdaptiveAvgPool { out } => Box::new(move || {
                netdsl_runtime::adaptive_avg_pool2d(&x, (out, out))?;
                Ok(())
            }),
            Op::Linear { relu } => {
                let w = w.ok_or("linear without weight")?;
                Box::new(move || {
                    let y = x.matmul(&w.t()?)?.broadcast_add(&b)?;
                    if relu {
                        y.relu()?;
                    }
                    Ok(())
                })
            }
            Op::Add { relu } => {
                let y = xs[1].clone();
                Box::new(move || {
                    let s = x.broadcast_add(&y)?;
                    if relu {
                        s.relu()?;
                    }
                    Ok(())
                })
            }
            Op::Cat => {
                let y = xs[1].clone();
                Box::new(move || {
                    Tensor::cat(&[&x, &y], 1)?;
                    Ok(())
                })
            }
        })
    }
}

/// Builds a plan layer by layer, tracking the current shape.
struct Plan {
    rows: Vec<Row>,
    cur: Vec<usize>,
}

impl Plan {
    fn new(input: &[usize]) -> Self {
        Plan {
            rows: Vec::new(),
            cur: input.to_vec(),
        }
    }

    fn push(
        &mut self,
        name: String,
        op: Op,
        inputs: Vec<Vec<usize>>,
        out: Vec<usize>,
    ) -> Vec<usize> {
        self.rows.push(Row {
            name,
            op,
            inputs,
            out: out.clone(),
        });
        self.cur = out.clone();
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
        bn: bool,
        act: Act,
    ) -> Vec<usize> {
        let [b, _, h, w] = self.cur[..] else {
            panic!("conv on {:?}", self.cur)
        };
        let o = |d: usize| (d + 2 * pad - k) / stride + 1;
        let out = vec![b, cout, o(h), o(w)];
        let op = Op::Conv {
            k,
            stride,
            pad,
            groups,
            bn,
            act,
        };
        self.push(name.to_string(), op, vec![self.cur.clone()], out)
    }

    fn convt(&mut self, name: &str, cout: usize, k: usize, stride: usize) -> Vec<usize> {
        let [b, _, h, w] = self.cur[..] else {
            panic!("convT on {:?}", self.cur)
        };
        let out = vec![b, cout, (h - 1) * stride + k, (w - 1) * stride + k];
        self.push(
            name.to_string(),
            Op::ConvT { k, stride },
            vec![self.cur.clone()],
            out,
        )
    }

    fn max_pool(&mut self, name: &str, k: usize, stride: usize, pad: usize) -> Vec<usize> {
        let [b, c, h, w] = self.cur[..] else {
            panic!("pool on {:?}", self.cur)
        };
        let o = |d: usize| (d + 2 * pad - k) / stride + 1;
        let out = vec![b, c, o(h), o(w)];
        self.push(
            name.to_string(),
            Op::MaxPool { k, stride, pad },
            vec![self.cur.clone()],
            out,
        )
    }

    fn adaptive_avg(&mut self, name: &str, out: usize) -> Vec<usize> {
        let shape = vec![self.cur[0], self.cur[1], out, out];
        self.push(
            name.to_string(),
            Op::AdaptiveAvgPool { out },
            vec![self.cur.clone()],
            shape,
        )
    }

    fn flatten(&mut self) {
        self.cur = vec![self.cur[0], elems(&self.cur[1..]) as usize];
    }

    fn linear(&mut self, name: &str, out: usize, relu: bool) -> Vec<usize> {
        let shape = vec![self.cur[0], out];
        self.push(
            name.to_string(),
            Op::Linear { relu },
            vec![self.cur.clone()],
            shape,
        )
    }

    fn add(&mut self, name: &str, a: &[usize], b: &[usize], relu: bool) -> Vec<usize> {
        self.push(
            name.to_string(),
            Op::Add { relu },
            vec![a.to_vec(), b.to_vec()],
            a.to_vec(),
        )
    }

    fn cat(&mut self, name: &str, a: &[usize], b: &[usize]) -> Vec<usize> {
        let mut out = a.to_vec();
        out[1] += b[1];
        self.push(name.to_string(), Op::Cat, vec![a.to_vec(), b.to_vec()], out)
    }
}

/// The layers of `model`'s inference `forward` at `input`, named by their
/// PyTorch module paths, in the order the generated code runs them. Each
/// convolution row includes its folded batch norm and its activation.
pub fn layer_plan(model: &str, input: &[usize]) -> R<Vec<Row>> {
    let mut p = Plan::new(input);
    match model {
        "lenet" => {
            p.conv("conv1 +ReLU", 6, 5, 1, 2, 1, false, Act::Relu);
            p.max_pool("max_pool(2) #1", 2, 2, 0);
            p.conv("conv2 +ReLU", 16, 5, 1, 0, 1, false, Act::Relu);
            p.max_pool("max_pool(2) #2", 2, 2, 0);
            p.flatten();
            p.linear("fc1 +ReLU", 120, true);
            p.linear("fc2 +ReLU", 84, true);
            p.linear("fc3", 10, false);
        }
        "alexnet" => {
            p.conv("features.0 +ReLU", 64, 11, 4, 2, 1, false, Act::Relu);
            p.max_pool("features.2", 3, 2, 0);
            p.conv("features.3 +ReLU", 192, 5, 1, 2, 1, false, Act::Relu);
            p.max_pool("features.5", 3, 2, 0);
            p.conv("features.6 +ReLU", 384, 3, 1, 1, 1, false, Act::Relu);
            p.conv("features.8 +ReLU", 256, 3, 1, 1, 1, false, Act::Relu);
            p.conv("features.10 +ReLU", 256, 3, 1, 1, 1, false, Act::Relu);
            p.max_pool("features.12", 3, 2, 0);
            p.adaptive_avg("avgpool", 6);
            p.flatten();
            p.linear("classifier.1 +ReLU", 4096, true);
            p.linear("classifier.4 +ReLU", 4096, true);
            p.linear("classifier.6", 1000, false);
        }
        "vgg16" => {
            let mut i = 0;
            for (n, c) in [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)] {
                for _ in 0..n {
                    p.conv(
                        &format!("features.{i} +ReLU"),
                        c,
                        3,
                        1,
                        1,
                        1,
                        false,
                        Act::Relu,
                    );
                    i += 2;
                }
                p.max_pool(&format!("features.{i}"), 2, 2, 0);
                i += 1;
            }
            p.adaptive_avg("avgpool", 7);
            p.flatten();
            p.linear("classifier.0 +ReLU", 4096, true);
            p.linear("classifier.3 +ReLU", 4096, true);
            p.linear("classifier.6", 1000, false);
        }
        "resnet18" => {
            p.conv("conv1 +bn1 +ReLU", 64, 7, 2, 3, 1, true, Act::Relu);
            p.max_pool("maxpool", 3, 2, 1);
            for (stage, c) in [(1, 64), (2, 128), (3, 256), (4, 512)] {
                for blk in 0..2 {
                    let stride = if stage > 1 && blk == 0 { 2 } else { 1 };
                    let n = format!("layer{stage}.{blk}");
                    let x = p.cur.clone();
                    p.conv(
                        &format!("{n}.conv1 +bn1 +ReLU"),
                        c,
                        3,
                        stride,
                        1,
                        1,
                        true,
                        Act::Relu,
                    );
                    let y = p.conv(&format!("{n}.conv2 +bn2"), c, 3, 1, 1, 1, true, Act::None);
                    let short = if stride != 1 || x[1] != c {
                        p.cur = x;
                        p.conv(
                            &format!("{n}.downsample"),
                            c,
                            1,
                            stride,
                            0,
                            1,
                            true,
                            Act::None,
                        )
                    } else {
                        x
                    };
                    p.add(&format!("{n} add +ReLU"), &y, &short, true);
                }
            }
            p.adaptive_avg("avgpool", 1);
            p.flatten();
            p.linear("fc", 1000, false);
        }
        "mobilenet_v2" => {
            p.conv("features.0 +BN +ReLU6", 32, 3, 2, 1, 1, true, Act::Relu6);
            let mut i = 1;
            for (t, c, n, s) in [
                (1, 16, 1, 1),
                (6, 24, 2, 2),
                (6, 32, 3, 2),
                (6, 64, 4, 2),
                (6, 96, 3, 1),
                (6, 160, 3, 2),
                (6, 320, 1, 1),
            ] {
                for j in 0..n {
                    let stride = if j == 0 { s } else { 1 };
                    let x = p.cur.clone();
                    let hidden = t * x[1];
                    let mut k = 0;
                    if t != 1 {
                        p.conv(
                            &format!("features.{i}.conv.0 1x1 +BN +ReLU6"),
                            hidden,
                            1,
                            1,
                            0,
                            1,
                            true,
                            Act::Relu6,
                        );
                        k += 1;
                    }
                    p.conv(
                        &format!("features.{i}.conv.{k} dw3x3 +BN +ReLU6"),
                        hidden,
                        3,
                        stride,
                        1,
                        hidden,
                        true,
                        Act::Relu6,
                    );
                    let y = p.conv(
                        &format!("features.{i}.conv.{} 1x1 +BN", k + 1),
                        c,
                        1,
                        1,
                        0,
                        1,
                        true,
                        Act::None,
                    );
                    if stride == 1 && x[1] == c {
                        p.add(&format!("features.{i} add"), &y, &x, false);
                    }
                    i += 1;
                }
            }
            p.conv(
                "features.18 1x1 +BN +ReLU6",
                1280,
                1,
                1,
                0,
                1,
                true,
                Act::Relu6,
            );
            p.adaptive_avg("adaptive_avg_pool2d", 1);
            p.flatten();
            p.linear("classifier.1", 1000, false);
        }
        "restore_unet" => {
            let x = p.cur.clone();
            p.conv("enc1.conv.0 +ReLU", 16, 3, 1, 1, 1, false, Act::Relu);
            let e1 = p.conv("enc1.conv.2 +ReLU", 16, 3, 1, 1, 1, false, Act::Relu);
            p.max_pool("max_pool(2) #1", 2, 2, 0);
            p.conv("enc2.conv.0 +ReLU", 32, 3, 1, 1, 1, false, Act::Relu);
            let e2 = p.conv("enc2.conv.2 +ReLU", 32, 3, 1, 1, 1, false, Act::Relu);
            p.max_pool("max_pool(2) #2", 2, 2, 0);
            p.conv("mid.0 +ReLU", 64, 3, 1, 1, 1, false, Act::Relu);
            let u2 = p.convt("up2", 32, 2, 2);
            p.cat("cat(e2, u2)", &e2, &u2);
            p.conv("dec2.0 +ReLU", 32, 3, 1, 1, 1, false, Act::Relu);
            let u1 = p.convt("up1", 16, 2, 2);
            p.cat("cat(e1, u1)", &e1, &u1);
            p.conv("dec1.0 +ReLU", 16, 3, 1, 1, 1, false, Act::Relu);
            let r = p.conv("out", 1, 1, 1, 0, 1, false, Act::None);
            p.add("x + r", &x, &r, false);
        }
        m => return Err(format!("no layer plan for model `{m}`").into()),
    }
    Ok(p.rows)
}
