//! MobileNetV2's inverted residual, written with an `if` inside a `seq`:
//! the expansion convolution exists only when `t != 1`, and the layers
//! after it are numbered as torchvision numbers them (`conv.0` is the
//! depthwise convolution when there is no expansion, `conv.1` when there
//! is). A tiny MobileNetV2 built from torchvision's own `InvertedResidual`
//! and `Conv2dNormActivation` loads unchanged and gives PyTorch's output.
//! Fixture: `scripts/gen_layout_fixtures.py`.

use netdsl::candle::Device;
use netdsl::network;

mod common;
use common::{formula_input, metadata_list, rel_err, state_dict, tensors};

network! {
    /// torchvision's `Conv2dNormActivation` with ReLU6: a `Sequential` of
    /// the convolution (padding (kernel - 1) / 2), its batch norm, ReLU6.
    pub block ConvBNReLU(x: [B, C, H, W], out: usize, kernel: usize = 3, stride: usize = 1, groups: usize = 1) {
        x -> seq {
            Conv2d(out, kernel = kernel, stride = stride, padding = (kernel - 1) / 2, groups = groups, bias = false)
            -> BatchNorm2d -> ReLU6
        }
    }

    /// torchvision's `InvertedResidual`: expand (only when `t != 1`),
    /// depthwise, project; the input added back when the shapes allow.
    pub block InvertedResidual(x: [B, C, H, W], out: usize, stride: usize, t: usize) {
        let hidden = C * t;
        let y = x -> conv: seq {
            if t != 1 { ConvBNReLU(hidden, kernel = 1) }
            -> ConvBNReLU(hidden, stride = stride, groups = hidden)
            -> Conv2d(out, kernel = 1, bias = false)
            -> BatchNorm2d
        };
        if stride == 1 && C == out { x + y } else { y }
    }

    /// A tiny MobileNetV2: torchvision's layout, four feature stages.
    pub MobileNetTiny(x: [B, 3, 32, 32]) -> [B, 5] {
        x -> features: seq {
            ConvBNReLU(8, stride = 2)
            -> InvertedResidual(8, stride = 1, t = 1)
            -> InvertedResidual(12, stride = 2, t = 6)
            -> InvertedResidual(12, stride = 1, t = 6)
        }
          -> AdaptiveAvgPool2d(1) -> flatten
          -> classifier: seq { Dropout(0.2) -> Linear(5) }
    }
}

const FIXTURE: &str = "mobilenet_tiny.safetensors";

#[test]
fn names_follow_torchvision_with_and_without_the_expansion() {
    let names: Vec<&str> = MobileNetTiny::MANIFEST.iter().map(|s| s.name).collect();
    // Every key of torchvision's state_dict, in its order.
    assert_eq!(names, metadata_list(FIXTURE, "state_dict_order"));
    // t = 1: no expansion, the depthwise convolution is `conv.0`.
    assert!(names.contains(&"features.1.conv.0.0.weight"));
    assert!(names.contains(&"features.1.conv.1.weight"));
    assert!(names.contains(&"features.1.conv.2.running_var"));
    assert!(!names.iter().any(|n| n.starts_with("features.1.conv.3")));
    // t = 6: the expansion is `conv.0`, everything after moves up by one.
    assert!(names.contains(&"features.2.conv.0.0.weight"));
    assert!(names.contains(&"features.2.conv.1.0.weight"));
    assert!(names.contains(&"features.2.conv.2.weight"));
    assert!(names.contains(&"features.2.conv.3.running_var"));
}

#[test]
fn loads_torchvision_weights_and_matches_its_output() {
    let io = tensors(FIXTURE);
    let x = formula_input((2, 3, 32, 32));
    let mut net = MobileNetTiny::from_tensors(state_dict(FIXTURE), &Device::Cpu).unwrap();
    net.eval();
    for fused in [true, false] {
        net.set_fusion(fused);
        let y = net.forward(&x).unwrap();
        let err = rel_err(&y, &io["output"]);
        eprintln!("fusion {fused}: relative error {err:e}");
        assert!(err <= 1e-4, "fusion {fused}: {err}");
    }
}
