//! Generated networks against the same networks written by hand in candle,
//! in one process, alternating in rounds (the machine is noisy: the paired
//! ratio is the number to trust). Both sides use the same weights and are
//! checked to give the same output first.
//!
//! `cargo bench --bench cnn` (set `RAYON_NUM_THREADS` to fix the thread count)

use std::time::Instant;

use netdsl::candle::{Device, Module, Tensor};
use netdsl::network;

include!("../examples/networks/alexnet.rs");
include!("../examples/networks/vgg16.rs");
include!("../examples/networks/lenet.rs");
include!("networks/vgg16_bn.rs");
include!("networks/resnet18_longhand.rs");
include!("../examples/networks/resnet18.rs");

network! {
    /// One VGG-BN style block: 3x3 conv, batch norm, ReLU.
    ConvBnRelu(x: [B, 64, 56, 56]) -> [B, 64, 56, 56] {
        x -> conv: Conv2d(64, kernel = 3, padding = 1, bias = false) -> bn: BatchNorm2d -> relu
    }
}

type R<T> = netdsl::Result<T>;

/// A convolution layer as written against candle: conv, bias, optional ReLU.
fn conv(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, stride: usize) -> R<Tensor> {
    let c = b.dim(0)?;
    Ok(x.conv2d(w, pad, stride, 1, 1)?
        .broadcast_add(&b.reshape((1, c, 1, 1))?)?)
}

fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> R<Tensor> {
    Ok(candle_nn_linear(w, b).forward(x)?)
}

fn candle_nn_linear(w: &Tensor, b: &Tensor) -> netdsl::candle_nn::Linear {
    netdsl::candle_nn::Linear::new(w.clone(), Some(b.clone()))
}

struct HandAlexNet {
    t: Vec<(String, Tensor)>,
}

impl HandAlexNet {
    fn w(&self, n: &str) -> &Tensor {
        &self.t.iter().find(|(k, _)| k == n).unwrap().1
    }
    fn forward(&self, x: &Tensor) -> R<Tensor> {
        let x = conv(
            x,
            self.w("features.0.weight"),
            self.w("features.0.bias"),
            2,
            4,
        )?
        .relu()?;
        let x = x.max_pool2d_with_stride(3, 2)?;
        let x = conv(
            &x,
            self.w("features.3.weight"),
            self.w("features.3.bias"),
            2,
            1,
        )?
        .relu()?;
        let x = x.max_pool2d_with_stride(3, 2)?;
        let x = conv(
            &x,
            self.w("features.6.weight"),
            self.w("features.6.bias"),
            1,
            1,
        )?
        .relu()?;
        let x = conv(
            &x,
            self.w("features.8.weight"),
            self.w("features.8.bias"),
            1,
            1,
        )?
        .relu()?;
        let x = conv(
            &x,
            self.w("features.10.weight"),
            self.w("features.10.bias"),
            1,
            1,
        )?
        .relu()?;
        let x = x.max_pool2d_with_stride(3, 2)?; // 6x6: the adaptive pool to 6x6 is the identity
        let x = x.flatten_from(1)?;
        let x = linear(
            &x,
            self.w("classifier.1.weight"),
            self.w("classifier.1.bias"),
        )?
        .relu()?;
        let x = linear(
            &x,
            self.w("classifier.4.weight"),
            self.w("classifier.4.bias"),
        )?
        .relu()?;
        linear(
            &x,
            self.w("classifier.6.weight"),
            self.w("classifier.6.bias"),
        )
    }
}

struct HandVgg16 {
    t: Vec<(String, Tensor)>,
}

impl HandVgg16 {
    fn forward(&self, x: &Tensor) -> R<Tensor> {
        let w = |n: &str| &self.t.iter().find(|(k, _)| k == n).unwrap().1;
        let mut x = x.clone();
        for (i, pool_after) in [
            (0, false),
            (2, true),
            (5, false),
            (7, true),
            (10, false),
            (12, false),
            (14, true),
            (17, false),
            (19, false),
            (21, true),
            (24, false),
            (26, false),
            (28, true),
        ] {
            x = conv(
                &x,
                w(&format!("features.{i}.weight")),
                w(&format!("features.{i}.bias")),
                1,
                1,
            )?
            .relu()?;
            if pool_after {
                x = x.max_pool2d(2)?;
            }
        }
        let x = x.flatten_from(1)?;
        let x = linear(&x, w("classifier.0.weight"), w("classifier.0.bias"))?.relu()?;
        let x = linear(&x, w("classifier.3.weight"), w("classifier.3.bias"))?.relu()?;
        linear(&x, w("classifier.6.weight"), w("classifier.6.bias"))
    }
}

/// VGG-16-BN as written by hand with candle-nn: conv, bias, `BatchNorm`
/// (eval), ReLU.
struct HandVgg16Bn {
    t: Vec<(String, Tensor)>,
    bns: Vec<netdsl::candle_nn::BatchNorm>,
}

impl HandVgg16Bn {
    fn new(t: Vec<(String, Tensor)>) -> Self {
        let w = |n: &str| t.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let bns = (0..13)
            .map(|i| {
                let j = BN_INDICES[i];
                netdsl::candle_nn::BatchNorm::new(
                    w(&format!("features.{j}.weight")).dim(0).unwrap(),
                    w(&format!("features.{j}.running_mean")),
                    w(&format!("features.{j}.running_var")),
                    w(&format!("features.{j}.weight")),
                    w(&format!("features.{j}.bias")),
                    1e-5,
                )
                .unwrap()
            })
            .collect();
        Self { t, bns }
    }

    fn forward(&self, x: &Tensor) -> R<Tensor> {
        use netdsl::candle::ModuleT;
        let w = |n: &str| &self.t.iter().find(|(k, _)| k == n).unwrap().1;
        let mut x = x.clone();
        for (i, &at) in CONV_INDICES.iter().enumerate() {
            x = conv(
                &x,
                w(&format!("features.{at}.weight")),
                w(&format!("features.{at}.bias")),
                1,
                1,
            )?;
            x = self.bns[i].forward_t(&x, false)?.relu()?;
            if POOL_AFTER.contains(&at) {
                x = x.max_pool2d(2)?;
            }
        }
        let x = x.flatten_from(1)?;
        let x = linear(&x, w("classifier.0.weight"), w("classifier.0.bias"))?.relu()?;
        let x = linear(&x, w("classifier.3.weight"), w("classifier.3.bias"))?.relu()?;
        linear(&x, w("classifier.6.weight"), w("classifier.6.bias"))
    }
}

/// torchvision's vgg16_bn `features` indices: conv, its batch norm, and the
/// convolutions followed by pooling.
const CONV_INDICES: [usize; 13] = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40];
const BN_INDICES: [usize; 13] = [1, 4, 8, 11, 15, 18, 21, 25, 28, 31, 35, 38, 41];
const POOL_AFTER: [usize; 5] = [3, 10, 20, 30, 40];

struct HandLeNet {
    t: Vec<(String, Tensor)>,
}

impl HandLeNet {
    fn forward(&self, x: &Tensor) -> R<Tensor> {
        let w = |n: &str| &self.t.iter().find(|(k, _)| k == n).unwrap().1;
        let x = conv(x, w("conv1.weight"), w("conv1.bias"), 2, 1)?
            .relu()?
            .max_pool2d(2)?;
        let x = conv(&x, w("conv2.weight"), w("conv2.bias"), 0, 1)?
            .relu()?
            .max_pool2d(2)?;
        let x = x.flatten_from(1)?;
        let x = linear(&x, w("fc1.weight"), w("fc1.bias"))?.relu()?;
        let x = linear(&x, w("fc2.weight"), w("fc2.bias"))?.relu()?;
        linear(&x, w("fc3.weight"), w("fc3.bias"))
    }
}

fn owned(named: Vec<(&'static str, &Tensor)>) -> Vec<(String, Tensor)> {
    named
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `a` and `b` alternately, `rounds` times each after one warm-up.
fn pair(name: &str, rounds: usize, a: &dyn Fn() -> R<Tensor>, b: &dyn Fn() -> R<Tensor>) {
    let (ya, yb) = (a().unwrap(), b().unwrap());
    let scale: f32 = yb.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    let diff = max_diff(&ya, &yb);
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{name}: outputs differ by {diff}"
    );
    let (mut ta, mut tb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let s = Instant::now();
        drop(a().unwrap());
        let x = s.elapsed().as_secs_f64() * 1e3;
        let s = Instant::now();
        drop(b().unwrap());
        let y = s.elapsed().as_secs_f64() * 1e3;
        ta.push(x);
        tb.push(y);
        ratios.push(x / y);
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = (sorted[sorted.len() / 4], sorted[(sorted.len() * 3) / 4]);
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} | {lo:.2}-{hi:.2} |",
        median(ta),
        median(tb),
        median(ratios)
    );
}

fn main() {
    let dev = Device::Cpu;
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = |n: usize| if quick { 2 } else { n };
    println!(
        "threads: {} (RAYON_NUM_THREADS or physical cores)\n",
        netdsl::candle::utils::get_num_threads()
    );
    println!("| workload | netdsl ms | hand-written candle ms | netdsl / hand (paired median) | quartiles |");
    println!("| --- | --- | --- | --- | --- |");

    let lenet = LeNet::new_seeded(0, &dev).unwrap();
    let hand = HandLeNet {
        t: owned(lenet.named_tensors()),
    };
    for b in [1usize, 256] {
        let x = Tensor::rand(0f32, 1.0, (b, 1, 28, 28), &dev).unwrap();
        pair(
            &format!("LeNet-5, batch {b}"),
            rounds(30),
            &|| lenet.forward(&x),
            &|| hand.forward(&x),
        );
    }

    let alex = AlexNet::new_seeded(0, &dev).unwrap();
    let hand = HandAlexNet {
        t: owned(alex.named_tensors()),
    };
    for b in [1usize, 8] {
        let x = Tensor::rand(0f32, 1.0, (b, 3, 224, 224), &dev).unwrap();
        pair(
            &format!("AlexNet, batch {b}"),
            rounds(if b == 1 { 20 } else { 8 }),
            &|| alex.forward(&x),
            &|| hand.forward(&x),
        );
    }
    drop((alex, hand));

    let vgg = Vgg16::new_seeded(0, &dev).unwrap();
    let hand = HandVgg16 {
        t: owned(vgg.named_tensors()),
    };
    let x = Tensor::rand(0f32, 1.0, (1, 3, 224, 224), &dev).unwrap();
    pair("VGG-16, batch 1", rounds(5), &|| vgg.forward(&x), &|| {
        hand.forward(&x)
    });
    drop((vgg, hand));

    // VGG-16-BN: the generated network folds its 13 batch norms.
    let mut vggbn = Vgg16Bn::new_seeded(0, &dev).unwrap();
    // Non-trivial running statistics.
    let stats: Vec<(String, Tensor)> = vggbn
        .named_tensors()
        .into_iter()
        .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
        .map(|(n, t)| {
            let shape = t.dims().to_vec();
            let v = if n.ends_with("mean") {
                Tensor::rand(-0.1f32, 0.1, shape, &dev).unwrap()
            } else {
                Tensor::rand(0.5f32, 1.5, shape, &dev).unwrap()
            };
            (n.to_string(), v)
        })
        .collect();
    let mut all: std::collections::HashMap<String, Tensor> = vggbn
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    all.extend(stats);
    vggbn = Vgg16Bn::from_tensors(all, &dev).unwrap();
    let hand = HandVgg16Bn::new(owned(vggbn.named_tensors()));
    let x = Tensor::rand(0f32, 1.0, (1, 3, 224, 224), &dev).unwrap();
    pair(
        "VGG-16-BN, batch 1 (batch norm folded)",
        rounds(5),
        &|| vggbn.forward(&x),
        &|| hand.forward(&x),
    );
    drop((vggbn, hand));

    // ResNet-18 from eight uses of one block against the same network written
    // out layer by layer: what a block costs at run time.
    let blocks = ResNet18::new_seeded(0, &dev).unwrap();
    let tensors: std::collections::HashMap<String, Tensor> = blocks
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let longhand = ResNet18Longhand::from_tensors(tensors, &dev).unwrap();
    let x = Tensor::rand(0f32, 1.0, (1, 3, 224, 224), &dev).unwrap();
    pair(
        "ResNet-18, batch 1: BasicBlock block vs written out (both netdsl)",
        rounds(10),
        &|| blocks.forward(&x),
        &|| longhand.forward(&x),
    );
    drop((blocks, longhand));

    // Batch norm folded into the convolution against conv, then batch norm.
    let mut folded = ConvBnRelu::new_seeded(0, &dev).unwrap();
    folded.bn.running_mean = Tensor::rand(-0.5f32, 0.5, 64, &dev).unwrap();
    folded.bn.running_var = Tensor::rand(0.5f32, 1.5, 64, &dev).unwrap();
    let mut unfolded = folded.clone();
    unfolded.set_fusion(false);
    folded.set_fusion(true);
    let x = Tensor::rand(0f32, 1.0, (8, 64, 56, 56), &dev).unwrap();
    pair(
        "conv 3x3 64->64 + BN + ReLU at 56x56, batch 8: folded vs unfolded (both netdsl)",
        rounds(10),
        &|| folded.forward(&x),
        &|| unfolded.forward(&x),
    );
}
