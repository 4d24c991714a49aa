//! The up-sampling ops written in `network!` equal PyTorch (fixture:
//! `scripts/gen_upsample_fixtures.py`; the runtime's own tests check the
//! gradients).

use std::collections::HashMap;

use netdsl::candle::{Device, Tensor};
use netdsl::network;

mod common;
use common::rel_err;

fn fixture() -> HashMap<String, Tensor> {
    common::tensors("upsample.safetensors")
}

network! {
    /// torch: ConvTranspose2d(4, 6, (2, 3), stride 2, padding 1, output_padding 1, dilation 2, groups 2)
    UpConv(x: [B, 4, 5, 7]) -> [B, 6, 10, 16] {
        x -> up: ConvTranspose2d(4 -> 6, kernel = (2, 3), stride = 2, padding = 1, output_padding = 1, dilation = 2, groups = 2)
    }
    Nearest(x: [B, 2, 5, 5]) -> [B, 2, 7, 7] { x -> Upsample(size = (7, 7)) }
    BilinearCorners(x: [B, 2, 4, 5]) -> [B, 2, 9, 13] {
        x -> Upsample(size = (9, 13), mode = bilinear, align_corners = true)
    }
    BilinearTwice(x: [B, 2, 4, 4]) -> [B, 2, 8, 8] { x -> Upsample(scale_factor = 2, mode = bilinear) }
    Shuffle(x: [B, 18, 2, 3]) -> [B, 2, 6, 9] { x -> PixelShuffle(3) }
}

#[test]
fn upsampling_ops_match_pytorch() {
    let f = fixture();
    let dev = Device::Cpu;
    let weights = HashMap::from([
        ("up.weight".to_string(), f["ct_full.weight"].clone()),
        ("up.bias".to_string(), f["ct_full.bias"].clone()),
    ]);
    let up = UpConv::from_tensors(weights, &dev).unwrap();
    let cases = [
        ("ct_full", up.forward(&f["ct_full.input"]).unwrap()),
        (
            "near_5to7",
            Nearest::new_seeded(0, &dev)
                .unwrap()
                .forward(&f["near_5to7.input"])
                .unwrap(),
        ),
        (
            "bil_up_ac",
            BilinearCorners::new_seeded(0, &dev)
                .unwrap()
                .forward(&f["bil_up_ac.input"])
                .unwrap(),
        ),
        (
            "bil_x2",
            BilinearTwice::new_seeded(0, &dev)
                .unwrap()
                .forward(&f["bil_x2.input"])
                .unwrap(),
        ),
        (
            "shuf_r3",
            Shuffle::new_seeded(0, &dev)
                .unwrap()
                .forward(&f["shuf_r3.input"])
                .unwrap(),
        ),
    ];
    for (case, out) in cases {
        let err = rel_err(&out, &f[&format!("{case}.output")]);
        assert!(err < 1e-4, "{case}: {err}");
    }
    // PyTorch's parameter layout for a transposed convolution: [Cin, Cout/groups, kh, kw].
    assert_eq!(UpConv::MANIFEST[0].shape, &[4, 3, 2, 3]);
}
