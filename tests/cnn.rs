//! The classic CNNs: torchvision's AlexNet and VGG-16 layouts (manifests equal
//! torchvision's state_dict exactly), width-reduced variants equal to
//! PyTorch's output at 224x224 and 193x193, and a batch-norm CNN whose
//! folded and unfolded forwards agree with each other and with PyTorch.
//! Fixtures: `scripts/gen_cnn_fixtures.py`.

use std::collections::HashMap;
use std::path::PathBuf;

use netdsl::candle::{DType, Device, Tensor};
use netdsl::network;

mod common;
use common::{fixture, formula_input, manifest, rel_err, tensors, torchvision};

include!("../examples/networks/alexnet.rs");
include!("../examples/networks/vgg16.rs");

network! {
    /// AlexNet's layout with channels / 16 and a 128-wide classifier.
    AlexNetSmall(x: [B, 3, 224, 224]) -> [B, 10] {
        x -> features: seq {
                Conv2d(4, kernel = 11, stride = 4, padding = 2) -> ReLU -> MaxPool2d(3, stride = 2)
                -> Conv2d(12, kernel = 5, padding = 2) -> ReLU -> MaxPool2d(3, stride = 2)
                -> Conv2d(24, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(16, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(16, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(3, stride = 2)
             }
          -> avgpool: AdaptiveAvgPool2d((6, 6)) -> flatten
          -> classifier: seq {
                Dropout(0.5) -> Linear(128) -> ReLU -> Dropout(0.5) -> Linear(128) -> ReLU -> Linear(10)
             }
    }
    /// The same at 193x193: the features end at 5x5 and the adaptive pool upsamples to 6x6.
    AlexNetSmall193(x: [B, 3, 193, 193]) -> [B, 10] {
        x -> features: seq {
                Conv2d(4, kernel = 11, stride = 4, padding = 2) -> ReLU -> MaxPool2d(3, stride = 2)
                -> Conv2d(12, kernel = 5, padding = 2) -> ReLU -> MaxPool2d(3, stride = 2)
                -> Conv2d(24, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(16, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(16, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(3, stride = 2)
             }                                                              : [B, 16, 5, 5]
          -> avgpool: AdaptiveAvgPool2d((6, 6)) -> flatten
          -> classifier: seq {
                Dropout(0.5) -> Linear(128) -> ReLU -> Dropout(0.5) -> Linear(128) -> ReLU -> Linear(10)
             }
    }
    /// VGG-16's layout with channels / 16 and a 128-wide classifier.
    Vgg16Small(x: [B, 3, 224, 224]) -> [B, 10] {
        x -> features: seq {
                Conv2d(4, kernel = 3, padding = 1) -> ReLU -> Conv2d(4, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)
                -> Conv2d(8, kernel = 3, padding = 1) -> ReLU -> Conv2d(8, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)
                -> Conv2d(16, kernel = 3, padding = 1) -> ReLU -> Conv2d(16, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(16, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)
                -> Conv2d(32, kernel = 3, padding = 1) -> ReLU -> Conv2d(32, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(32, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)
                -> Conv2d(32, kernel = 3, padding = 1) -> ReLU -> Conv2d(32, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(32, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)
             }
          -> avgpool: AdaptiveAvgPool2d((7, 7)) -> flatten
          -> classifier: seq {
                Linear(128) -> ReLU -> Dropout(0.5) -> Linear(128) -> ReLU -> Dropout(0.5) -> Linear(10)
             }
    }
    Vgg16Small193(x: [B, 3, 193, 193]) -> [B, 10] {
        x -> features: seq {
                Conv2d(4, kernel = 3, padding = 1) -> ReLU -> Conv2d(4, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)
                -> Conv2d(8, kernel = 3, padding = 1) -> ReLU -> Conv2d(8, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)
                -> Conv2d(16, kernel = 3, padding = 1) -> ReLU -> Conv2d(16, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(16, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)
                -> Conv2d(32, kernel = 3, padding = 1) -> ReLU -> Conv2d(32, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(32, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)
                -> Conv2d(32, kernel = 3, padding = 1) -> ReLU -> Conv2d(32, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(32, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(2)                     : [B, 32, 6, 6]
             }
          -> avgpool: AdaptiveAvgPool2d((7, 7)) -> flatten
          -> classifier: seq {
                Linear(128) -> ReLU -> Dropout(0.5) -> Linear(128) -> ReLU -> Dropout(0.5) -> Linear(10)
             }
    }
    /// Batch norm after a convolution, after a convolution with bias and
    /// eps 1e-3, and after a linear layer (BatchNorm1d): all three fold.
    BnCnn(x: [B, 3, 16, 16]) -> [B, 10] {
        x -> conv1: Conv2d(8, kernel = 3, padding = 1, bias = false) -> bn1: BatchNorm2d -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 3, padding = 1) -> bn2: BatchNorm2d(16, eps = 1e-3) -> relu
          -> AdaptiveAvgPool2d(1) -> flatten
          -> fc: Linear(10) -> bn3: BatchNorm1d(10)
    }
    /// Winograd F(4x4, 3x3) after a folded batch norm (`conv1`), on a conv
    /// with a bias (`conv2`), and one padded on one side only (`conv3`),
    /// at sizes that are not multiples of the 4x4 tile.
    WinoBn(x: [B, 16, 23, 18]) -> [B, 24, 22, 18] {
        x -> conv1: Conv2d(32, kernel = 3, padding = 1, bias = false) -> bn1: BatchNorm2d -> relu
          -> conv2: Conv2d(32, kernel = 3, padding = 1) -> GELU
          -> conv3: Conv2d(24, kernel = 3, padding = (1, 1, 0, 1))
    }
    /// Known sizes where Winograd pays only without AVX-512 (`a`, `b`:
    /// 32 channels in over 128x128) and where it pays on neither (`c`,
    /// 16 -> 16).
    CpuWino(x: [1, 32, 128, 128]) -> [1, 16, 128, 128] {
        x -> a: Conv2d(32, kernel = 3, padding = 1)
          -> b: Conv2d(16, kernel = 3, padding = 1)
          -> c: Conv2d(16, kernel = 3, padding = 1)
    }
    /// The activations of the CNN issue, each on the same input.
    LeakyTenth(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> LeakyReLU(0.1) }
    LeakyDefault(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> leaky_relu }
    GeluExact(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> GELU }
    GeluTanh(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> GELU(approximate = tanh) }
    Silu(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> SiLU }
    Relu6(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> ReLU6 }
    HardSwish(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> Hardswish }
    DropoutEval(x: [B, 3, 5, 7]) -> [B, 3, 5, 7] { x -> Dropout(p = 0.3) }
}

#[test]
fn manifests_equal_torchvision() {
    assert_eq!(manifest(AlexNet::MANIFEST), torchvision("alexnet"));
    assert_eq!(manifest(Vgg16::MANIFEST), torchvision("vgg16"));
    assert_eq!(AlexNet::PARAMETERS, 61_100_840);
    assert_eq!(Vgg16::PARAMETERS, 138_357_544);
}

fn check_small<N>(
    load: impl Fn(&PathBuf) -> netdsl::Result<N>,
    forward: impl Fn(&N, &Tensor) -> netdsl::Result<Tensor>,
    file: &str,
    size: usize,
) {
    let net = load(&fixture(file)).unwrap();
    let expected = &tensors(file)[&format!("output_{size}")];
    let out = forward(&net, &formula_input((1, 3, size, size))).unwrap();
    let err = rel_err(&out, expected);
    assert!(err < 1e-4, "{file} at {size}: relative error {err}");
}

#[test]
fn alexnet_matches_pytorch_at_224_and_193() {
    // The fixture holds the outputs too: load only the manifest's tensors.
    let weights = |path: &PathBuf| strip_outputs(path, "alexnet");
    check_small(
        |p| AlexNetSmall::load(weights(p), &Device::Cpu),
        AlexNetSmall::forward,
        "alexnet_small.safetensors",
        224,
    );
    check_small(
        |p| AlexNetSmall193::load(weights(p), &Device::Cpu),
        AlexNetSmall193::forward,
        "alexnet_small.safetensors",
        193,
    );
}

#[test]
fn vgg16_matches_pytorch_at_224_and_193() {
    let weights = |path: &PathBuf| strip_outputs(path, "vgg");
    check_small(
        |p| Vgg16Small::load(weights(p), &Device::Cpu),
        Vgg16Small::forward,
        "vgg16_small.safetensors",
        224,
    );
    check_small(
        |p| Vgg16Small193::load(weights(p), &Device::Cpu),
        Vgg16Small193::forward,
        "vgg16_small.safetensors",
        193,
    );
}

/// Copies a fixture without its `output_*`/`features_*`/`input` entries, so
/// the strict loader sees exactly the state_dict.
fn strip_outputs(path: &PathBuf, tag: &str) -> PathBuf {
    let keep: HashMap<String, Tensor> = netdsl::candle::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !(k.starts_with("output") || k.starts_with("features_") || k == "input"))
        .collect();
    let out = std::env::temp_dir().join(format!(
        "netdsl-cnn-{tag}-{}.safetensors",
        std::process::id()
    ));
    netdsl::candle::safetensors::save(&keep, &out).unwrap();
    out
}

#[test]
fn batch_norm_folded_and_unfolded_match_pytorch() {
    let io = tensors("bn_cnn.safetensors");
    let mut net = BnCnn::load(
        strip_outputs(&fixture("bn_cnn.safetensors"), "bn"),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        BnCnn::FUSIONS
            .lines()
            .filter(|l| l.contains("folded in ("))
            .count(),
        3,
        "{}",
        BnCnn::FUSIONS
    );
    let folded = net.forward(&io["input"]).unwrap();
    net.set_fusion(false);
    let plain = net.forward(&io["input"]).unwrap();
    assert!(
        rel_err(&folded, &plain) < 1e-5,
        "folded vs unfolded: {}",
        rel_err(&folded, &plain)
    );
    assert!(
        rel_err(&plain, &io["output"]) < 1e-4,
        "unfolded vs torch: {}",
        rel_err(&plain, &io["output"])
    );
    assert!(
        rel_err(&folded, &io["output"]) < 1e-4,
        "folded vs torch: {}",
        rel_err(&folded, &io["output"])
    );
    // Buffers are saved unfolded, with PyTorch's names, and count as no parameters.
    assert_eq!(
        BnCnn::PARAMETERS,
        8 * 27 + 2 * 8 + (16 * 72 + 16) + 2 * 16 + (10 * 16 + 10) + 2 * 10
    );
    let names: Vec<&str> = net.named_tensors().iter().map(|(n, _)| *n).collect();
    assert!(names.contains(&"bn1.num_batches_tracked") && names.contains(&"bn3.running_var"));
}

/// Where the sizes are known and Winograd pays only against the gathered
/// lowering (CPUs without AVX-512), the choice is listed as the CPU's.
#[test]
fn winograd_that_pays_only_without_avx512_is_listed_as_the_cpus() {
    let lines: Vec<&str> = CpuWino::FUSIONS
        .lines()
        .filter(|l| l.contains("Winograd"))
        .collect();
    assert_eq!(lines.len(), 2, "{}", CpuWino::FUSIONS);
    for (line, layer) in lines.iter().zip(["`a`", "`b`"]) {
        assert!(line.contains(layer), "{line}");
        assert!(line.contains("on CPUs without AVX-512"), "{line}");
    }
}

/// The Winograd layers (folded or not) give the direct lowering's output,
/// which the networks above show equal to PyTorch's, within 1e-5
/// relative; the direct path runs with fusion off and in training.
#[test]
fn winograd_layers_equal_the_direct_lowering() {
    let chosen: Vec<&str> = WinoBn::FUSIONS
        .lines()
        .filter(|l| l.contains("Winograd"))
        .collect();
    assert_eq!(chosen.len(), 3, "{}", WinoBn::FUSIONS);
    assert!(Vgg16Small::FUSIONS.contains("Winograd"));
    let dev = Device::Cpu;
    let mut net = WinoBn::new_seeded(7, &dev).unwrap();
    net.bn1.running_mean = Tensor::randn(0f32, 0.5, 32, &dev).unwrap();
    net.bn1.running_var = Tensor::rand(0.5f32, 2.0, 32, &dev).unwrap();
    net.bn1.weight = Tensor::randn(1f32, 0.3, 32, &dev).unwrap();
    net.eval();
    let x = Tensor::randn(0f32, 1.0, (2, 16, 23, 18), &dev).unwrap();
    let fast = net.forward(&x).unwrap();
    net.set_fusion(false);
    let direct = net.forward(&x).unwrap();
    let err = rel_err(&fast, &direct);
    assert!(err < 1e-5, "Winograd vs direct: {err}");
    // The cache follows a replaced weight.
    net.set_fusion(true);
    net.conv2.weight = (net.conv2.weight.clone() * 0.5).unwrap();
    let fast = net.forward(&x).unwrap();
    net.set_fusion(false);
    let direct = net.forward(&x).unwrap();
    assert!(rel_err(&fast, &direct) < 1e-5);
}

#[test]
fn folds_follow_replaced_parameters() {
    let io = tensors("bn_cnn.safetensors");
    let mut net = BnCnn::load(
        strip_outputs(&fixture("bn_cnn.safetensors"), "bn2"),
        &Device::Cpu,
    )
    .unwrap();
    let before = net.forward(&io["input"]).unwrap();
    // Replace a batch norm's running variance: the cached fold must be recomputed.
    net.bn2.running_var = (&net.bn2.running_var * 4.0).unwrap();
    let folded = net.forward(&io["input"]).unwrap();
    net.set_fusion(false);
    let plain = net.forward(&io["input"]).unwrap();
    assert!(rel_err(&folded, &plain) < 1e-5);
    assert!(rel_err(&folded, &before) > 1e-3, "the change must show");
    // The same for an affine weight of the batch norm folded into `fc`.
    net.set_fusion(true);
    net.bn3.weight = (&net.bn3.weight * 2.0).unwrap();
    let folded = net.forward(&io["input"]).unwrap();
    net.set_fusion(false);
    let plain = net.forward(&io["input"]).unwrap();
    assert!(
        rel_err(&folded, &plain) < 1e-5,
        "bn3.weight replaced: {}",
        rel_err(&folded, &plain)
    );
}

#[test]
fn activations_match_pytorch() {
    let t = tensors("activations.safetensors");
    let x = &t["input"];
    let dev = Device::Cpu;
    let cases: Vec<(&str, Tensor)> = vec![
        (
            "leaky_relu_0.1",
            LeakyTenth::new_seeded(0, &dev).unwrap().forward(x).unwrap(),
        ),
        (
            "leaky_relu_default",
            LeakyDefault::new_seeded(0, &dev)
                .unwrap()
                .forward(x)
                .unwrap(),
        ),
        (
            "gelu",
            GeluExact::new_seeded(0, &dev).unwrap().forward(x).unwrap(),
        ),
        (
            "gelu_tanh",
            GeluTanh::new_seeded(0, &dev).unwrap().forward(x).unwrap(),
        ),
        (
            "silu",
            Silu::new_seeded(0, &dev).unwrap().forward(x).unwrap(),
        ),
        (
            "relu6",
            Relu6::new_seeded(0, &dev).unwrap().forward(x).unwrap(),
        ),
        (
            "hardswish",
            HardSwish::new_seeded(0, &dev).unwrap().forward(x).unwrap(),
        ),
        (
            "dropout_eval",
            DropoutEval::new_seeded(0, &dev)
                .unwrap()
                .forward(x)
                .unwrap(),
        ),
    ];
    for (name, out) in cases {
        let err = rel_err(&out, &t[name]);
        assert!(err < 1e-5, "{name}: {err}");
    }
}

#[test]
fn full_size_alexnet_runs() {
    let net = AlexNet::new_seeded(0, &Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 3, 224, 224), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(net.forward(&x).unwrap().dims(), &[1, 1000]);
}

network! {
    /// BatchNorm1d after a linear layer on a rank-3 input normalises dim 1
    /// (T here), not the features: it must not be folded.
    SeqNorm(x: [B, 4, 6]) -> [B, 4, 3] {
        x -> fc: Linear(3) -> bn: BatchNorm1d(4)
    }
}

#[test]
fn batch_norm_after_rank3_linear_is_not_folded() {
    assert!(!SeqNorm::FUSIONS.contains("folded"), "{}", SeqNorm::FUSIONS);
    let mut net = SeqNorm::new_seeded(0, &Device::Cpu).unwrap();
    net.bn.running_mean = Tensor::new(&[0.1f32, -0.2, 0.3, 0.0], &Device::Cpu).unwrap();
    let x = Tensor::rand(0f32, 1.0, (2, 4, 6), &Device::Cpu).unwrap();
    let a = net.forward(&x).unwrap();
    net.set_fusion(false);
    assert!(rel_err(&a, &net.forward(&x).unwrap()) < 1e-6);
}

include!("../examples/networks/resnet18.rs");

#[test]
fn resnet18_manifest_equals_torchvision() {
    assert_eq!(manifest(ResNet18::MANIFEST), torchvision("resnet18"));
    assert_eq!(ResNet18::PARAMETERS, 11_689_512);
    let net = ResNet18::new_seeded(0, &Device::Cpu).unwrap();
    let x = Tensor::rand(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu).unwrap();
    assert_eq!(net.forward(&x).unwrap().dims(), &[1, 1000]);
    // Every batch norm follows a convolution: all fold, the stem's and, once
    // for all eight uses, the basic block's three.
    let folds: Vec<&str> = ResNet18::FUSIONS
        .lines()
        .filter(|l| l.contains("folded in ("))
        .collect();
    assert_eq!(folds.len(), 4, "{folds:?}");
    assert_eq!(
        folds
            .iter()
            .filter(|l| l.starts_with("[BasicBlock] "))
            .count(),
        3
    );
}

/// In its own module: it defines its own `BasicBlock` struct.
mod resnet34 {
    use netdsl::network;
    include!("../examples/networks/resnet34.rs");
}

#[test]
fn resnet34_sixteen_uses_of_one_block_equal_torchvision() {
    use resnet34::ResNet34;
    assert_eq!(manifest(ResNet34::MANIFEST), torchvision("resnet34"));
    assert_eq!(ResNet34::PARAMETERS, 21_797_672);
    // One struct for all 16 uses: its code appears once in the expansion.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/networks/resnet34.rs"
    ))
    .unwrap();
    let body = text
        .trim()
        .strip_prefix("network! {")
        .and_then(|t| t.strip_suffix('}'))
        .unwrap();
    let code = netdsl_compiler::expand_pretty(body.parse().unwrap()).unwrap();
    assert_eq!(code.matches("pub struct BasicBlock").count(), 1);
    assert_eq!(code.matches("impl BasicBlock").count(), 1);
    assert_eq!(code.matches("BasicBlock::__build(").count(), 16);
    // The block's two convolutions and its projection, each with a folded and
    // a plain path, and the stem's: 8 calls, not 16 x 6. Inference takes
    // every folded weight prepared (packed once; Winograd where chosen, a
    // number per use).
    assert_eq!(code.matches("::conv2d(").count(), 4);
    assert_eq!(code.matches("::conv2d_prepared(").count(), 4);
    let net = ResNet34::new_seeded(0, &Device::Cpu).unwrap();
    let x = Tensor::rand(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu).unwrap();
    assert_eq!(net.forward(&x).unwrap().dims(), &[1, 1000]);
}
