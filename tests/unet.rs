//! U-Net with copy-and-crop skips: the original's shapes (572 -> 388) are
//! checked at compile time, and a width-reduced U-Net equals PyTorch
//! (fixture: `scripts/gen_unet_fixtures.py`).

use std::path::PathBuf;

use netdsl::candle::{Device, Tensor};
use netdsl::network;

mod common;
use common::{formula_input, max_abs_diff};

/// The original U-Net, in its own module: its `DoubleConv` block is a
/// struct of that name, as is the small network's below.
mod original {
    use netdsl::network;
    include!("../examples/networks/unet.rs");
}
use original::UNet;

network! {
    /// `DoubleConv` as in the original U-Net.
    block DoubleConv(x: [B, C, H, W], out: usize) -> [B, out, H - 4, W - 4] {
        x -> seq { Conv2d(out, kernel = 3) -> ReLU -> Conv2d(out, kernel = 3) -> ReLU }
    }

    /// The same graph with channels / 16, on a 188x188 input (-> 4x4),
    /// from the same `DoubleConv` block.
    UNetSmall(x: [B, 1, 188, 188]) -> [B, 2, 4, 4] {
        let d1 = x -> down1: DoubleConv(4);
        let d2 = d1 -> max_pool(2) -> down2: DoubleConv(8);
        let d3 = d2 -> max_pool(2) -> down3: DoubleConv(16);
        let d4 = d3 -> max_pool(2) -> down4: DoubleConv(32);
        let b = d4 -> max_pool(2) -> bottom: DoubleConv(64);
        let u4 = b -> up4: ConvTranspose2d(32, kernel = 2, stride = 2);
        let y4 = cat(crop(d4, like = u4), u4, dim = 1) -> dec4: DoubleConv(32);
        let u3 = y4 -> up3: ConvTranspose2d(16, kernel = 2, stride = 2);
        let y3 = cat(crop(d3, like = u3), u3, dim = 1) -> dec3: DoubleConv(16);
        let u2 = y3 -> up2: ConvTranspose2d(8, kernel = 2, stride = 2);
        let y2 = cat(crop(d2, like = u2), u2, dim = 1) -> dec2: DoubleConv(8);
        let u1 = y2 -> up1: ConvTranspose2d(4, kernel = 2, stride = 2);
        cat(crop(d1, like = u1), u1, dim = 1) -> dec1: DoubleConv(4) -> out: Conv2d(2, kernel = 1)
    }

    /// The expanding path's step as a block with two tensor inputs: the
    /// up-convolution of `x`, the skip cropped to it, concatenated, then
    /// `DoubleConv`.
    block Up(x: [B, C, H, W], skip: [B, S, Hs, Ws], out: usize) -> [B, out, 2 * H - 4, 2 * W - 4] {
        let u = x -> up: ConvTranspose2d(out, kernel = 2, stride = 2);
        cat(crop(skip, like = u), u, dim = 1) -> conv: DoubleConv(out)
    }

    /// The small U-Net again, its expanding path from four uses of `Up`.
    UNetSmallUp(x: [B, 1, 188, 188]) -> [B, 2, 4, 4] {
        let d1 = x -> down1: DoubleConv(4);
        let d2 = d1 -> max_pool(2) -> down2: DoubleConv(8);
        let d3 = d2 -> max_pool(2) -> down3: DoubleConv(16);
        let d4 = d3 -> max_pool(2) -> down4: DoubleConv(32);
        d4 -> max_pool(2) -> bottom: DoubleConv(64)
           -> up4: Up(d4, 32) -> up3: Up(d3, 16) -> up2: Up(d2, 8) -> up1: Up(skip = d1, out = 4)
           -> out: Conv2d(2, kernel = 1)
    }

    /// A residual block: the input added to two same-padded convolutions.
    Residual(x: [B, 8, 12, 12]) -> [B, 8, 12, 12] {
        let y = x -> conv1: Conv2d(8, kernel = 3, padding = 1) -> relu -> conv2: Conv2d(8, kernel = 3, padding = 1);
        (x + y) -> relu
    }
}

#[test]
fn original_unet_shapes_and_summary() {
    assert_eq!(UNet::OUTPUT_SHAPE, "[B, 2, 388, 388]");
    // Every level's size is in the summary.
    for needle in [
        "[B, 64, 568, 568]",
        "[B, 1024, 28, 28]",
        "[B, 1024, 56, 56]",
        "CenterCrop(56 x 56)",
        "[B, 128, 392, 392]",
    ] {
        assert!(
            UNet::SUMMARY.contains(needle),
            "{needle} missing:\n{}",
            UNet::SUMMARY
        );
    }
}

/// The small U-Net's PyTorch weights and its output on the formula input.
fn small_fixture() -> (std::collections::HashMap<String, Tensor>, Tensor) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet_small.safetensors");
    let mut tensors = netdsl::candle::safetensors::load(path, &Device::Cpu).unwrap();
    let expected = tensors.remove("output").unwrap();
    (tensors, expected)
}

/// Blocks with two tensor inputs: the same weights under the block's names
/// (`up4.weight` -> `up4.up.weight`, `dec4.0.weight` -> `up4.conv.0.weight`)
/// give PyTorch's output.
#[test]
fn small_unet_from_up_blocks_matches_pytorch() {
    let (tensors, expected) = small_fixture();
    let renamed = tensors
        .into_iter()
        .map(|(name, t)| {
            let name = match name.split_once('.') {
                Some((up, rest)) if up.starts_with("up") => format!("{up}.up.{rest}"),
                Some((dec, rest)) if dec.starts_with("dec") => {
                    format!("up{}.conv.{rest}", &dec[3..])
                }
                _ => name,
            };
            (name, t)
        })
        .collect();
    let net = UNetSmallUp::from_tensors(renamed, &Device::Cpu).unwrap();
    let out = net.forward(&formula_input((1, 1, 188, 188))).unwrap();
    let err = max_abs_diff(&out, &expected);
    assert!(err < 2e-5, "max |netdsl - torch| = {err}");
}

#[test]
fn small_unet_matches_pytorch() {
    let (tensors, expected) = small_fixture();
    let net = UNetSmall::from_tensors(tensors, &Device::Cpu).unwrap();
    let out = net.forward(&formula_input((1, 1, 188, 188))).unwrap();
    // The default-initialised U-Net's output varies little around its mean:
    // compare tightly.
    let err = max_abs_diff(&out, &expected);
    assert!(err < 2e-5, "max |netdsl - torch| = {err}");
    let zeros = Tensor::zeros((1, 1, 188, 188), netdsl::candle::DType::F32, &Device::Cpu).unwrap();
    let moved = max_abs_diff(&net.forward(&zeros).unwrap(), &out);
    assert!(
        moved > 10.0 * err,
        "the input must matter: {moved} vs {err}"
    );
}

#[test]
fn residual_add() {
    let net = Residual::new_seeded(3, &Device::Cpu).unwrap();
    let x = Tensor::rand(-1f32, 1.0, (2, 8, 12, 12), &Device::Cpu).unwrap();
    let y = net.forward(&x).unwrap();
    // By hand: relu(x + conv2(relu(conv1(x)))).
    let c = |t: &Tensor, p: &netdsl::layers::Conv2dParams| {
        t.conv2d(&p.weight, 1, 1, 1, 1)
            .unwrap()
            .broadcast_add(&p.bias.reshape((1, 8, 1, 1)).unwrap())
            .unwrap()
    };
    let expected = (&x + c(&c(&x, &net.conv1).relu().unwrap(), &net.conv2))
        .unwrap()
        .relu()
        .unwrap();
    let err = max_abs_diff(&y, &expected);
    assert!(err < 1e-5, "{err}");
}

#[test]
fn graph_pictures() {
    let m = UNet::GRAPH_MERMAID;
    assert!(m.starts_with("graph TD\n"), "{m}");
    // The input, a skip edge into a merge, and the output with their shapes.
    assert!(m.contains("v0[\"x [B, 1, 572, 572]\"]"), "{m}");
    assert!(m.contains("d4 [B, 512, 64, 64]"), "{m}");
    assert!(m.contains("-->|\"CenterCrop\"|"), "{m}");
    assert!(m.contains("output [B, 2, 388, 388]"), "{m}");
    assert!(UNet::GRAPH_DOT.starts_with("digraph UNet {"));
    assert_eq!(
        UNet::GRAPH_DOT.matches(" -> ").count(),
        m.matches("-->").count(),
        "the two pictures have the same edges"
    );
}
