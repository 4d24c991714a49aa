//! LeNet-5 end to end: PyTorch parity, initialisation, weight files and the
//! runtime errors a user can meet.

use std::collections::HashMap;
use std::path::PathBuf;

use netdsl::candle::{DType, Device, Tensor};
use netdsl::{network, Error, WeightProblem};

network! {
    /// LeNet-5 as in `scripts/gen_fixtures.py`.
    pub LeNet(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(1 -> 6, kernel = 5, padding = 2) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)  : [B, 16, 5, 5]
          -> flatten
          -> fc1: Linear(400 -> 120) -> relu
          -> fc2: Linear(84) -> relu
          -> fc3: Linear(10)
    }

    /// The same network ending in a log-softmax, and one ending in a softmax.
    LeNetLogProbs(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5, padding = 2) -> ReLU -> MaxPool2d(2)
          -> conv2: Conv2d(16, kernel = 5) -> ReLU -> MaxPool2d(kernel = 2, stride = 2)
          -> Flatten
          -> fc1: Linear(120) -> ReLU -> fc2: Linear(84) -> ReLU -> fc3: Linear(10)
          -> LogSoftmax(dim = 1)
    }
    LeNetProbs(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5, padding = 2) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2) -> flatten
          -> fc1: Linear(120) -> relu -> fc2: Linear(84) -> relu -> fc3: Linear(10)
          -> softmax(-1)
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn io() -> HashMap<String, Tensor> {
    netdsl::candle::safetensors::load(fixture("lenet_io.safetensors"), &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netdsl-lenet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn matches_pytorch_output() {
    let io = io();
    let net = LeNet::load(fixture("lenet.safetensors"), &Device::Cpu).unwrap();
    let out = net.forward(&io["input"]).unwrap();
    let err = max_abs_diff(&out, &io["output"]);
    assert!(err < 1e-4, "max |netdsl - torch| = {err}");

    let logp = LeNetLogProbs::load(fixture("lenet.safetensors"), &Device::Cpu).unwrap();
    let err = max_abs_diff(&logp.forward(&io["input"]).unwrap(), &io["log_softmax"]);
    assert!(err < 1e-4, "log_softmax: {err}");
    let p = LeNetProbs::load(fixture("lenet.safetensors"), &Device::Cpu).unwrap();
    let err = max_abs_diff(&p.forward(&io["input"]).unwrap(), &io["softmax"]);
    assert!(err < 1e-5, "softmax: {err}");
}

#[test]
fn constants_describe_the_network() {
    // conv1 6*25+6, conv2 16*150+16, fc1 120*400+120, fc2 84*120+84, fc3 10*84+10
    assert_eq!(LeNet::PARAMETERS, 156 + 2_416 + 48_120 + 10_164 + 850);
    assert_eq!(LeNet::INPUT_SHAPE, "[B, 1, 28, 28]");
    assert_eq!(LeNet::OUTPUT_SHAPE, "[B, 10]");
    assert!(LeNet::SUMMARY.contains("conv2           Conv2d(6 -> 16, kernel 5)            [B, 16, 10, 10]   2,416  240,000  480,000"));
    assert!(LeNet::SUMMARY.contains("\nmax_pool(2) #2  MaxPool2d(2)  "));
    let names: Vec<&str> = LeNet::MANIFEST.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
            "fc3.weight",
            "fc3.bias"
        ]
    );
    fn send_sync<T: Send + Sync>() {}
    send_sync::<LeNet>();
}

#[test]
fn seeded_init_is_reproducible_and_pytorch_scaled() {
    let a = LeNet::new_seeded(42, &Device::Cpu).unwrap();
    let b = LeNet::new_seeded(42, &Device::Cpu).unwrap();
    let c = LeNet::new_seeded(43, &Device::Cpu).unwrap();
    for ((name, ta), ((_, tb), (_, tc))) in a
        .named_tensors()
        .into_iter()
        .zip(b.named_tensors().into_iter().zip(c.named_tensors()))
    {
        assert_eq!(max_abs_diff(ta, tb), 0.0, "{name}");
        assert!(max_abs_diff(ta, tc) > 0.0, "{name}");
    }
    // fc1: fan_in 400, so weight and bias lie in (-1/20, 1/20).
    let w = a
        .fc1
        .weight
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(w <= 0.05 && w > 0.049, "{w}");
    let unseeded = LeNet::new(&Device::Cpu).unwrap();
    assert!(max_abs_diff(&unseeded.fc1.weight, &a.fc1.weight) > 0.0);
}

#[test]
fn save_load_round_trip_is_bit_exact() {
    let net = LeNet::new_seeded(7, &Device::Cpu).unwrap();
    let path = scratch("roundtrip.safetensors");
    net.save(&path).unwrap();
    LeNet::check_weights(&path).unwrap();
    let back = LeNet::load(&path, &Device::Cpu).unwrap();
    let x = io()["input"].clone();
    let (a, b) = (net.forward(&x).unwrap(), back.forward(&x).unwrap());
    let a: Vec<u32> = a
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let b: Vec<u32> = b
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(a, b);
}

#[test]
fn wrong_input_shapes_are_typed_errors() {
    let net = LeNet::new_seeded(0, &Device::Cpu).unwrap();
    let rank3 = Tensor::zeros((1, 28, 28), DType::F32, &Device::Cpu).unwrap();
    match net.forward(&rank3) {
        Err(Error::InputShape {
            network,
            expected,
            got,
            reason,
        }) => {
            assert_eq!(
                (network, expected, got),
                ("LeNet", "[B, 1, 28, 28]", vec![1, 28, 28])
            );
            assert_eq!(reason, "rank 3 given, rank 4 expected");
        }
        other => panic!("expected an input-shape error, got {other:?}"),
    }
    let rgb = Tensor::zeros((2, 3, 28, 28), DType::F32, &Device::Cpu).unwrap();
    let e = net.forward(&rgb).unwrap_err().to_string();
    assert_eq!(e, "`LeNet` expects an input of shape [B, 1, 28, 28], but was given [2, 3, 28, 28]: dim 1 is 3, expected 1");
}

fn write_weights(name: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    let mut map =
        netdsl::candle::safetensors::load(fixture("lenet.safetensors"), &Device::Cpu).unwrap();
    edit(&mut map);
    let path = scratch(name);
    netdsl::candle::safetensors::save(&map, &path).unwrap();
    path
}

fn problems(path: &PathBuf) -> Vec<WeightProblem> {
    match LeNet::load(path, &Device::Cpu) {
        Err(Error::Weights(w)) => {
            assert_eq!(w.network, "LeNet");
            w.problems
        }
        other => panic!("expected a weights error, got {other:?}"),
    }
}

#[test]
fn weight_file_problems_are_all_reported() {
    let missing = write_weights("missing.safetensors", |m| {
        m.remove("fc3.bias");
    });
    assert_eq!(
        problems(&missing),
        [WeightProblem::Missing {
            name: "fc3.bias".into(),
            expected: vec![10]
        }]
    );

    let extra = write_weights("extra.safetensors", |m| {
        m.insert(
            "fc4.weight".into(),
            Tensor::zeros((2, 10), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert_eq!(
        problems(&extra),
        [WeightProblem::Unexpected {
            name: "fc4.weight".into(),
            found: vec![2, 10]
        }]
    );

    let misshaped = write_weights("misshaped.safetensors", |m| {
        m.insert(
            "conv1.weight".into(),
            Tensor::zeros((6, 3, 5, 5), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert_eq!(
        problems(&misshaped),
        [WeightProblem::Shape {
            name: "conv1.weight".into(),
            expected: vec![6, 1, 5, 5],
            found: vec![6, 3, 5, 5]
        }]
    );

    let all = write_weights("all.safetensors", |m| {
        m.remove("fc3.bias");
        m.remove("conv2.weight");
        m.insert(
            "fc2.weight".into(),
            Tensor::zeros((84, 100), DType::F32, &Device::Cpu).unwrap(),
        );
        m.insert(
            "extra".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        m.insert(
            "fc1.bias".into(),
            Tensor::zeros(120, DType::U32, &Device::Cpu).unwrap(),
        );
    });
    let msg = LeNet::load(&all, &Device::Cpu).unwrap_err().to_string();
    assert!(
        msg.contains("cannot load") && msg.contains("5 problems"),
        "{msg}"
    );
    for needle in [
        "missing tensor `conv2.weight` (expected shape [16, 6, 5, 5])",
        "tensor `fc1.bias` has dtype U32, expected F32",
        "tensor `fc2.weight` has shape [84, 100], expected [84, 120]",
        "missing tensor `fc3.bias` (expected shape [10])",
        "unexpected tensor `extra` of shape [3]",
    ] {
        assert!(msg.contains(needle), "{needle} not in:\n{msg}");
    }
    // The header check alone finds the same problems.
    assert!(matches!(LeNet::check_weights(&all), Err(Error::Weights(w)) if w.problems.len() == 5));
}

#[test]
fn other_float_dtypes_are_converted() {
    let f64s = write_weights("f64.safetensors", |m| {
        for t in m.values_mut() {
            *t = t.to_dtype(DType::F64).unwrap();
        }
    });
    let net = LeNet::load(&f64s, &Device::Cpu).unwrap();
    let io = io();
    assert!(max_abs_diff(&net.forward(&io["input"]).unwrap(), &io["output"]) < 1e-4);
}

#[test]
fn truncated_and_garbage_files_are_clear_errors() {
    let bytes = std::fs::read(fixture("lenet.safetensors")).unwrap();
    for (name, cut) in [
        ("cut-data", bytes.len() - 100),
        ("cut-header", 40),
        ("cut-length", 5),
        ("empty", 0),
    ] {
        let path = scratch(&format!("{name}.safetensors"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match LeNet::load(&path, &Device::Cpu) {
            Err(Error::Malformed { problem, .. }) => assert!(!problem.to_string().is_empty()),
            other => panic!("{name}: expected a malformed-file error, got {other:?}"),
        }
    }
    let msg = {
        let path = scratch("cut-data.safetensors");
        LeNet::load(&path, &Device::Cpu).unwrap_err().to_string()
    };
    assert!(msg.contains("truncated"), "{msg}");
    let garbage = scratch("garbage.safetensors");
    std::fs::write(&garbage, b"\x10\0\0\0\0\0\0\0not json at all!").unwrap();
    assert!(matches!(
        LeNet::load(&garbage, &Device::Cpu),
        Err(Error::Malformed { .. })
    ));
    let nowhere = scratch("does-not-exist.safetensors");
    assert!(matches!(
        LeNet::load(&nowhere, &Device::Cpu),
        Err(Error::Io { .. })
    ));
}

/// A parameter source that hands out tensors of the wrong shape or dtype.
struct Bad(DType, usize);

impl netdsl::ParamSource for Bad {
    fn take(&mut self, spec: &netdsl::ParamSpec) -> netdsl::Result<Tensor> {
        let mut shape = spec.shape.to_vec();
        shape[0] += self.1;
        Ok(Tensor::zeros(shape, self.0, &Device::Cpu)?)
    }
}

#[test]
fn custom_sources_are_checked_and_inputs_need_f32() {
    let e = LeNet::from_source(&mut Bad(DType::F32, 1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`LeNet`: the parameter source gave a bad tensor: tensor `conv1.weight` has shape [7, 1, 5, 5], expected [6, 1, 5, 5]"
    );
    let e = LeNet::from_source(&mut Bad(DType::F64, 0)).unwrap_err();
    assert!(e.to_string().contains("has dtype F64, expected F32"), "{e}");
    let net = LeNet::new_seeded(0, &Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 1, 28, 28), DType::F64, &Device::Cpu).unwrap();
    assert!(matches!(
        net.forward(&x),
        Err(Error::InputDType {
            network: "LeNet",
            ..
        })
    ));
}
