//! The model zoo (`--features models`): every torchvision network's
//! state_dict (names, shapes, dtypes, in order) equals torchvision's, so its
//! weights load unchanged; the parameter counts are torchvision's; the
//! networks run, ResNet-18 and MobileNetV2 equal torchvision's at an odd
//! image size. Manifests: `scripts/gen_cnn_fixtures.py`; the any-size
//! outputs: `scripts/gen_zoo_fixtures.py`.
#![cfg(feature = "models")]

use netdsl::candle::{DType, Device, Tensor};
use netdsl::models::*;

mod common;
use common::{manifest, torchvision};

#[test]
fn state_dicts_equal_torchvision() {
    for (ours, theirs) in [
        (manifest(AlexNet::MANIFEST), "alexnet"),
        (manifest(Vgg16::MANIFEST), "vgg16"),
        (manifest(Vgg16Bn::MANIFEST), "vgg16_bn"),
        (manifest(ResNet18::MANIFEST), "resnet18"),
        (manifest(ResNet34::MANIFEST), "resnet34"),
        (manifest(MobileNetV2::MANIFEST), "mobilenet_v2"),
    ] {
        let want = torchvision(theirs);
        assert_eq!(ours.len(), want.len(), "{theirs}: entry count");
        for (a, b) in ours.iter().zip(&want) {
            assert_eq!(a, b, "{theirs}");
        }
    }
}

#[test]
fn parameter_counts_are_torchvision_s() {
    // torchvision's sum(p.numel() for p in model.parameters()).
    assert_eq!(AlexNet::PARAMETERS, 61_100_840);
    assert_eq!(Vgg16::PARAMETERS, 138_357_544);
    assert_eq!(Vgg16Bn::PARAMETERS, 138_365_992);
    assert_eq!(ResNet18::PARAMETERS, 11_689_512);
    assert_eq!(ResNet34::PARAMETERS, 21_797_672);
    assert_eq!(MobileNetV2::PARAMETERS, 3_504_872);
}

#[test]
fn the_small_networks_run() {
    let dev = Device::Cpu;
    let lenet = LeNet5::new_seeded(0, &dev).unwrap();
    let y = lenet
        .forward(&Tensor::zeros((2, 1, 28, 28), DType::F32, &dev).unwrap())
        .unwrap();
    assert_eq!(y.dims(), &[2, 10]);
    // A wrong input size is an error naming the expected shape, not a panic.
    let bad = lenet.forward(&Tensor::zeros((2, 1, 32, 32), DType::F32, &dev).unwrap());
    assert!(bad.is_err());
}

/// `scripts/gen_zoo_fixtures.py`'s `zoo_weight`: the recurrent fixtures'
/// formula of the full state_dict name, scaled by a power of two near
/// `1 / sqrt(fan_in)` for convolutions and linears, around 1 for batch
/// norm scales and variances, by 1/4 for biases and means; batch counts 0.
fn zoo_weights(manifest: &[netdsl::ParamSpec]) -> std::collections::HashMap<String, Tensor> {
    manifest
        .iter()
        .map(|p| {
            let f = common::formula(p.shape, p.name);
            let t = if p.dtype != DType::F32 {
                // num_batches_tracked: torchvision's 0 (eval does not read it).
                Tensor::zeros(p.shape, p.dtype, &Device::Cpu)
            } else if p.shape.len() >= 2 {
                let fan_in: usize = p.shape[1..].iter().product();
                let k = ((fan_in as f64).log2() / 2.0).floor() as i32 - 1;
                f.affine(2f64.powi(-k), 0.0)
            } else if p.name.ends_with("running_var") || p.name.ends_with("weight") {
                f.affine(1.0, 1.0)
            } else {
                f.affine(0.25, 0.0)
            };
            (p.name.to_string(), t.unwrap())
        })
        .collect()
}

/// torchvision's networks take any image size; so do the zoo's: ResNet-18
/// and MobileNetV2 at 97 x 113, where every strided layer rounds down
/// (49 x 57, 25 x 29, 13 x 15, 7 x 8, 4 x 4), equal torchvision's at full
/// width, with batch norms folded and not.
#[test]
fn resnet18_and_mobilenet_v2_at_97_by_113_equal_torchvision() {
    let dev = Device::Cpu;
    let io = common::tensors("zoo_any_size.safetensors");
    let x = common::formula_input((1, 3, 97, 113));
    let mut resnet = ResNet18::from_tensors(zoo_weights(ResNet18::MANIFEST), &dev).unwrap();
    let mut mobilenet =
        MobileNetV2::from_tensors(zoo_weights(MobileNetV2::MANIFEST), &dev).unwrap();
    for fusion in [true, false] {
        resnet.set_fusion(fusion);
        mobilenet.set_fusion(fusion);
        for (name, y, want) in [
            (
                "ResNet18",
                resnet.forward(&x).unwrap(),
                &io["resnet18.output"],
            ),
            (
                "MobileNetV2",
                mobilenet.forward(&x).unwrap(),
                &io["mobilenet_v2.output"],
            ),
        ] {
            let err = common::rel_err(&y, want);
            assert!(err < 1e-4, "{name} (fusion {fusion}) at 97 x 113: {err}");
        }
    }
    // 224 x 224 still gives [1, 1000]; a wrong channel count is an error,
    // not a panic.
    let x = Tensor::zeros((1, 3, 224, 224), DType::F32, &dev).unwrap();
    assert_eq!(resnet.forward(&x).unwrap().dims(), &[1, 1000]);
    let bad = Tensor::zeros((1, 4, 97, 113), DType::F32, &dev).unwrap();
    assert!(resnet.forward(&bad).is_err());
}

/// The zoo's blocks build alone for the configurations its networks use:
/// MobileNetV2's inverted residual (with its nested `ConvBNReLU`s and the
/// expansion only `t != 1` has) and ResNet's basic block, named as their
/// own state_dicts.
#[test]
fn zoo_blocks_build_alone() {
    let dev = Device::Cpu;
    let names = |specs: &[netdsl::ParamSpec]| -> Vec<String> {
        specs.iter().map(|s| s.name.to_string()).collect()
    };
    assert_eq!(BasicBlock::CONFIGURATIONS.len(), 7);
    let b = BasicBlock::new_seeded(0, &dev, 64, 128, 2).unwrap();
    let x = Tensor::ones((1, 64, 9, 9), DType::F32, &dev).unwrap();
    assert_eq!(b.forward_eval(&x).unwrap().dims(), &[1, 128, 5, 5]);
    assert_eq!(
        names(BasicBlock::manifest(64, 128, 2).unwrap())[..3],
        ["conv1.weight", "bn1.weight", "bn1.bias"]
    );
    // The t = 1 use has no expansion, so its code differs: a struct of its
    // own, with its one configuration.
    assert_eq!(
        InvertedResidual::CONFIGURATIONS,
        ["C = 32, out = 16, stride = 1, t = 1"]
    );
    assert!(InvertedResidual2::CONFIGURATIONS.contains(&"C = 24, out = 32, stride = 2, t = 6"));
    let specs = InvertedResidual2::manifest(24, 32, 2, 6).unwrap();
    // torchvision's numbering inside the block: the expansion, the
    // depthwise convolution, the projection and its batch norm.
    let n = names(specs);
    assert_eq!(n[0], "conv.0.0.weight");
    assert!(n.contains(&"conv.1.0.weight".to_string()), "{n:?}");
    assert!(n.contains(&"conv.3.running_var".to_string()), "{n:?}");
    assert_eq!(specs[0].shape, &[144, 24, 1, 1]);
    let r = InvertedResidual2::new_seeded(1, &dev, 24, 32, 2, 6).unwrap();
    let x = Tensor::ones((2, 24, 7, 8), DType::F32, &dev).unwrap();
    assert_eq!(r.forward_eval(&x).unwrap().dims(), &[2, 32, 4, 4]);
    assert!(InvertedResidual2::new_seeded(1, &dev, 24, 32, 3, 6).is_err());
}
