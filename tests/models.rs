//! The model zoo (`--features models`): every torchvision network's
//! state_dict (names, shapes, dtypes, in order) equals torchvision's, so its
//! weights load unchanged; the parameter counts are torchvision's; the
//! networks run. Manifests: `scripts/gen_cnn_fixtures.py`.
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
