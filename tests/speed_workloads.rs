//! The speed harness's workload list (`benches/speed/workloads.json`, read
//! by both `scripts/speed.py` and the bench binary) agrees with the Rust
//! side: every workload names a model that `benches/speed/models.rs`
//! builds, and each model's layer plan (the per-layer breakdown, run on the
//! runtime's own ops) chains its shapes and ends in the network's declared
//! output shape. Cheap: only LeNet-5 is built and stepped.

use netdsl::candle::{Device, Tensor};
use netdsl::network;

include!("../examples/networks/lenet.rs");
include!("../examples/networks/alexnet.rs");
include!("../examples/networks/vgg16.rs");
include!("../examples/networks/resnet18.rs");
include!("../benches/networks/mobilenet_v2.rs");

#[allow(dead_code)]
#[path = "../examples/common/restore_unet.rs"]
mod restore_unet;
use restore_unet::Restorer;

#[allow(dead_code)]
#[path = "../benches/speed/models.rs"]
mod models;
use models::*;

/// A declared shape such as `[B, 1, H, W]` at the workload's input.
fn declared(shape: &str, input: &[usize]) -> Vec<usize> {
    shape
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|d| match d.trim() {
            "B" => input[0],
            "H" => input[2],
            "W" => input[3],
            n => n.parse().expect("a number or B, H, W"),
        })
        .collect()
}

fn output_shape(model: &str) -> &'static str {
    match model {
        "lenet" => LeNet::OUTPUT_SHAPE,
        "alexnet" => AlexNet::OUTPUT_SHAPE,
        "vgg16" => Vgg16::OUTPUT_SHAPE,
        "resnet18" => ResNet18::OUTPUT_SHAPE,
        "mobilenet_v2" => MobileNetV2::OUTPUT_SHAPE,
        "restore_unet" => Restorer::OUTPUT_SHAPE,
        m => panic!("no network for model `{m}`"),
    }
}

#[test]
fn every_workload_has_a_model_and_a_layer_plan_that_ends_in_its_output() {
    let list = workloads().unwrap();
    assert!(list.len() >= 11, "{list:?}");
    let mut names: Vec<&str> = list.iter().map(|w| w.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), list.len(), "workload names must be unique");
    for w in &list {
        assert!(
            MODELS.contains(&w.model.as_str()),
            "{}: model `{}` not built by the bench",
            w.name,
            w.model
        );
        let plan = layer_plan(&w.model, &w.input).unwrap();
        assert_eq!(plan[0].inputs[0], w.input, "{}", w.name);
        assert_eq!(
            plan.last().unwrap().out,
            declared(output_shape(&w.model), &w.input),
            "{}",
            w.name
        );
        for row in &plan {
            assert!(
                row.flops() > 0 || row.name.starts_with("cat"),
                "{}: {} has no FLOPs",
                w.name,
                row.name
            );
            assert!(row.bytes() > 0);
        }
    }
    for m in MODELS {
        assert!(
            list.iter().any(|w| w.model == *m),
            "model `{m}` is in no workload"
        );
    }
}

#[test]
fn lenet_workloads_step_and_its_layers_run_on_the_runtime() {
    let dev = Device::Cpu;
    for w in workloads().unwrap().iter().filter(|w| w.model == "lenet") {
        let mut step = build(w, &dev).unwrap();
        step().unwrap();
    }
    // The plan's convolution and linear layers are LeNet's: the same MACs as
    // the generated network's summary (416,520 per sample), and every row runs.
    let plan = layer_plan("lenet", &[1, 1, 28, 28]).unwrap();
    let macs: u64 = plan
        .iter()
        .filter_map(|r| {
            r.weight_shape().map(|w| {
                w.iter().product::<usize>() as u64 * (r.out[2..].iter().product::<usize>() as u64)
            })
        })
        .sum();
    assert_eq!(macs, 416_520);
    for row in &plan {
        (row.runner(&dev).unwrap())().unwrap();
    }
    let x = Tensor::rand(0f32, 1.0, (1, 1, 28, 28), &dev).unwrap();
    let net = LeNet::new_seeded(0, &dev).unwrap();
    assert_eq!(
        net.forward(&x).unwrap().dims(),
        plan.last().unwrap().out.as_slice()
    );
}

#[test]
fn mobilenet_v2_has_torchvisions_state_dict_layout() {
    // torchvision 0.29's `mobilenet_v2()`: 314 state_dict entries (batch-norm
    // buffers included), 3,504,872 parameters, in this order.
    let names: Vec<&str> = MobileNetV2::MANIFEST.iter().map(|p| p.name).collect();
    assert_eq!(MobileNetV2::PARAMETERS, 3_504_872);
    assert_eq!(names.len(), 314);
    assert_eq!(
        &names[..8],
        [
            "features.0.0.weight",
            "features.0.1.weight",
            "features.0.1.bias",
            "features.0.1.running_mean",
            "features.0.1.running_var",
            "features.0.1.num_batches_tracked",
            "features.1.conv.0.0.weight",
            "features.1.conv.0.1.weight",
        ]
    );
    assert!(names.contains(&"features.2.conv.1.0.weight"));
    assert!(names.contains(&"features.17.conv.3.running_var"));
    assert_eq!(
        &names[names.len() - 2..],
        ["classifier.1.weight", "classifier.1.bias"]
    );
}
