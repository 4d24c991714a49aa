//! Splicing a block's layers into the enclosing `seq` (`..Stage(16, convs
//! = 2)`): torchvision's flat VGG `features.N` layout written with stage
//! blocks. The state_dict equals the one `torchvision.models.vgg.make_layers`
//! gives, and the output PyTorch's. Fixture: `scripts/gen_layout_fixtures.py`.

use netdsl::candle::Device;
use netdsl::network;

mod common;
use common::{formula_input, metadata_list, rel_err, state_dict, tensors};

network! {
    /// A VGG stage: `convs` same-padded 3x3 convolutions with ReLU, then a
    /// 2x2 max pool, all in one flat list (`..repeat`). Spliced, its layers
    /// are numbered in the caller's `seq`.
    pub block Stage(x: [B, C, H, W], out: usize, convs: usize) {
        x -> ..repeat convs { Conv2d(out, kernel = 3, padding = 1) -> ReLU } -> MaxPool2d(2)
    }

    /// `make_layers([8, "M", 16, 16, "M"])`, then one Linear.
    pub VggSpliced(x: [B, 3, 32, 32]) -> [B, 10] {
        x -> features: seq { ..Stage(8, convs = 1) -> ..Stage(16, convs = 2) }
          -> flatten -> classifier: seq { Linear(10) }
    }
}

const FIXTURE: &str = "vgg_spliced.safetensors";

#[test]
fn spliced_stages_number_like_make_layers() {
    let names: Vec<&str> = VggSpliced::MANIFEST.iter().map(|s| s.name).collect();
    assert_eq!(names, metadata_list(FIXTURE, "state_dict_order"));
    assert_eq!(names[0], "features.0.weight");
    assert_eq!(names[2], "features.3.weight");
    assert_eq!(names[4], "features.5.weight");
}

#[test]
fn spliced_stages_match_pytorch() {
    let io = tensors(FIXTURE);
    let net = VggSpliced::from_tensors(state_dict(FIXTURE), &Device::Cpu).unwrap();
    let y = net.forward(&formula_input((2, 3, 32, 32))).unwrap();
    let err = rel_err(&y, &io["output"]);
    assert!(err <= 1e-4, "relative error {err}");
}
