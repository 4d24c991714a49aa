//! The vision transformer in `network!` with torchvision's layout:
//! ViT-B/16's manifest (names and shapes, no weights allocated) equals
//! `torchvision.models.vit_b_16()`'s state_dict; width-reduced ViTs equal
//! torchvision's `VisionTransformer` of the same sizes in eval mode, at 224
//! through the loading path of `examples/vit.rs`, and at 288 and 160 with
//! the position embedding interpolated as torchvision's
//! `interpolate_embeddings`; `DropPath` drops whole samples at its rate;
//! `MultiHeadAttention`'s timm and Hugging Face layouts equal PyTorch's.
//!
//! Fixtures: `scripts/gen_vit_fixtures.py` writes
//! `tests/fixtures/vit_b_16_manifest.json`,
//! `tests/fixtures/vit_small.safetensors`,
//! `tests/fixtures/vit_tiny_224.safetensors` (a state_dict alone, as the
//! example reads it), `tests/fixtures/vit_tiny_io.safetensors` and
//! `tests/fixtures/mha_layouts.safetensors`.

mod common;

use std::collections::HashMap;

use netdsl::candle::{DType, Device, Tensor, Var};
use netdsl::{network, ParamSource, ParamSpec};

use common::{fixture, formula_input, rel_err, tensors};

/// The example's network, as `examples/vit.rs` compiles it.
mod example {
    use netdsl::network;
    include!("../examples/networks/vit.rs");
}

/// The example's loading path.
#[path = "../examples/common/vit.rs"]
mod vit_loading;

network! {
    /// torchvision's `EncoderBlock`: pre-norm self-attention and MLP, each
    /// with a residual connection.
    pub block EncoderBlock(x: [B, T, E], heads: usize, mlp_dim: usize) -> [B, T, E] {
        let a = x -> ln_1: LayerNorm(eps = 1e-6) -> self_attention: MultiHeadAttention(heads = heads)
                  -> dropout: Dropout(0.0);
        let y = x + a;
        let m = y -> ln_2: LayerNorm(eps = 1e-6)
                  -> mlp: seq { Linear(mlp_dim) -> GELU -> Dropout(0.0) -> Linear(E) -> Dropout(0.0) };
        y + m
    }

    /// torchvision's `Encoder`: the position embedding, two encoder blocks
    /// and the final norm, under torchvision's names (`encoder.pos_embedding`,
    /// `encoder.layers.encoder_layer_0`, `encoder.ln`).
    block Encoder(x: [B, N, E], heads: usize, mlp_dim: usize) -> [B, N, E] {
        x -> pos_embedding: PosEmbedding
          -> dropout: Dropout(0.0)
          -> layers: seq { encoder_layer_0: EncoderBlock(heads, mlp_dim) -> encoder_layer_1: EncoderBlock(heads, mlp_dim) }
          -> ln: LayerNorm(eps = 1e-6)
    }

    /// torchvision's `VisionTransformer(image_size = 32, patch_size = 8,
    /// num_layers = 2, num_heads = 2, hidden_dim = 16, mlp_dim = 32,
    /// num_classes = 10)`.
    pub VitSmall(x: [B, 3, 32, 32]) -> [B, 10] {
        x -> conv_proj: PatchEmbed(16, patch = 8)                  : [B, 16, 16]
          -> class_token: ClassToken
          -> encoder: Encoder(2, 32)
          -> Select(1, 0)
          -> heads.head: Linear(10)
    }

    /// torchvision's `VisionTransformer(image_size = 224, patch_size = 16,
    /// num_layers = 2, num_heads = 2, hidden_dim = 8, mlp_dim = 16,
    /// num_classes = 10)`.
    pub VitTiny(x: [B, 3, 224, 224]) -> [B, 10] {
        x -> conv_proj: PatchEmbed(8, patch = 16)                  : [B, 196, 8]
          -> class_token: ClassToken
          -> encoder: Encoder(2, 16)
          -> Select(1, 0)
          -> heads.head: Linear(10)
    }

    /// The same network declared at 288 x 288: an 18 x 18 grid of patches.
    pub VitTiny288(x: [B, 3, 288, 288]) -> [B, 10] {
        x -> conv_proj: PatchEmbed(8, patch = 16)                  : [B, 324, 8]
          -> class_token: ClassToken
          -> encoder: Encoder(2, 16)
          -> Select(1, 0)
          -> heads.head: Linear(10)
    }

    /// And at 160 x 160: a 10 x 10 grid.
    pub VitTiny160(x: [B, 3, 160, 160]) -> [B, 10] {
        x -> conv_proj: PatchEmbed(8, patch = 16)                  : [B, 100, 8]
          -> class_token: ClassToken
          -> encoder: Encoder(2, 16)
          -> Select(1, 0)
          -> heads.head: Linear(10)
    }

    /// timm's ViT `Block`: pre-norm, `attn.qkv` and `attn.proj`, stochastic
    /// depth on both branches.
    pub block TimmBlock(x: [B, T, E], heads: usize, mlp_dim: usize, dp: f64) -> [B, T, E] {
        let a = x -> norm1: LayerNorm(eps = 1e-6) -> attn: MultiHeadAttention(heads = heads, layout = timm)
                  -> drop_path1: DropPath(dp);
        let y = x + a;
        let m = y -> norm2: LayerNorm(eps = 1e-6)
                  -> mlp: seq { fc1: Linear(mlp_dim) -> GELU -> fc2: Linear(E) }
                  -> drop_path2: DropPath(dp);
        y + m
    }

    /// timm's `VisionTransformer(img_size = 32, patch_size = 8, embed_dim =
    /// 16, depth = 2, num_heads = 2, mlp_ratio = 2, num_classes = 10,
    /// drop_path_rate = 0.1)`: the drop rates rise linearly over the blocks
    /// (0 and 0.1), as timm spaces them.
    pub TimmVitSmall(x: [B, 3, 32, 32]) -> [B, 10] {
        x -> patch_embed.proj: PatchEmbed(16, patch = 8)            : [B, 16, 16]
          -> cls_token: ClassToken
          -> pos_embed: PosEmbedding
          -> blocks: seq { TimmBlock(2, 32, 0.0) -> TimmBlock(2, 32, 0.1) }
          -> norm: LayerNorm(eps = 1e-6)
          -> Select(1, 0)
          -> head: Linear(10)
    }

    /// One attention under the three parameter layouts.
    pub MhaTorch(x: [B, 5, 8]) -> [B, 5, 8] {
        x -> attn: MultiHeadAttention(heads = 2)
    }
    pub MhaTimm(x: [B, 5, 8]) -> [B, 5, 8] {
        x -> attn: MultiHeadAttention(heads = 2, layout = timm)
    }
    pub MhaHf(x: [B, 5, 8]) -> [B, 5, 8] {
        x -> attn: MultiHeadAttention(8, 2, layout = hf)
    }

    /// A residual branch under stochastic depth.
    pub DropPathNet(x: [B, 3, 5]) -> [B, 3, 5] {
        x -> drop: DropPath(0.25)
    }
}

fn torchvision_manifest() -> Vec<(String, Vec<usize>)> {
    let text = std::fs::read_to_string(fixture("vit_b_16_manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let shape = e["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (name, shape)
        })
        .collect()
}

/// The same names and shapes as torchvision's state_dict (152 entries,
/// 86,567,656 parameters). The order differs in two places only: PyTorch
/// lists a module's own parameters before its children's, so `class_token`
/// comes before `conv_proj` and `encoder.pos_embedding` before the layers
/// there, while the manifest follows the chain.
#[test]
fn vit_b_16_manifest_equals_torchvision() {
    let mut ours: Vec<(String, Vec<usize>)> = example::VitB16::MANIFEST
        .iter()
        .map(|s| (s.name.to_string(), s.shape.to_vec()))
        .collect();
    let mut theirs = torchvision_manifest();
    assert_eq!(ours.len(), 152);
    // Apart from those two moves, the order is the same.
    let moved = |v: &[(String, Vec<usize>)]| -> Vec<String> {
        v.iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n != "class_token" && n != "encoder.pos_embedding")
            .collect()
    };
    assert_eq!(moved(&ours), moved(&theirs));
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    assert_eq!(example::VitB16::PARAMETERS, 86_567_656);
}

struct Source(HashMap<String, Tensor>);

impl ParamSource for Source {
    fn take(&mut self, spec: &ParamSpec) -> netdsl::Result<Tensor> {
        self.0.remove(spec.name).ok_or_else(|| {
            netdsl::candle::Error::Msg(format!("the fixture has no `{}`", spec.name)).into()
        })
    }
}

#[test]
fn small_vit_equals_torchvision() {
    let t = tensors("vit_small.safetensors");
    let state: HashMap<String, Tensor> = t
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("state.")?.to_string(), v.clone())))
        .collect();
    let mut source = Source(state);
    let net = VitSmall::from_source(&mut source).unwrap();
    assert!(source.0.is_empty(), "unused: {:?}", source.0.keys());
    let out = net.forward(&t["input"]).unwrap();
    let err = rel_err(&out, &t["output"]);
    eprintln!("vit_small: error {err:e}");
    assert!(err <= 1e-4, "error {err:e}");
}

/// The example's loading path on a file holding a randomly initialised
/// torchvision ViT's state_dict (width-reduced: real weights cannot be
/// downloaded here): the network equals torchvision's at 224.
#[test]
fn tiny_vit_loads_through_the_example_and_equals_torchvision() {
    let io = tensors("vit_tiny_io.safetensors");
    let path = fixture("vit_tiny_224.safetensors");
    let (_, notes) = vit_loading::torchvision_state(&path, VitTiny::MANIFEST).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let net = vit_loading::load(
        &path,
        VitTiny::MANIFEST,
        &Device::Cpu,
        VitTiny::from_tensors,
    )
    .unwrap();
    let out = net.forward(&formula_input((2, 3, 224, 224))).unwrap();
    let err = rel_err(&out, &io["out_224"]);
    eprintln!("vit_tiny at 224: error {err:e}");
    assert!(err <= 1e-4, "error {err:e}");
}

/// The 224 checkpoint loads into the network declared at 288 and at 160:
/// the position embedding is resampled as torchvision's
/// `interpolate_embeddings`, and the outputs equal torchvision's model
/// loaded with it.
#[test]
fn checkpoint_at_224_loads_at_other_sizes_with_interpolated_positions() {
    let io = tensors("vit_tiny_io.safetensors");
    let path = fixture("vit_tiny_224.safetensors");

    let (state, notes) = vit_loading::torchvision_state(&path, VitTiny288::MANIFEST).unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let pos = &state["encoder.pos_embedding"];
    assert_eq!(pos.dims(), [1, 325, 8]);
    let err = rel_err(pos, &io["pos_288"]);
    eprintln!("pos_embedding 14x14 -> 18x18: error {err:e}");
    assert!(err <= 1e-6, "interpolated embedding error {err:e}");

    let net = vit_loading::load(
        &path,
        VitTiny288::MANIFEST,
        &Device::Cpu,
        VitTiny288::from_tensors,
    )
    .unwrap();
    let out = net.forward(&formula_input((2, 3, 288, 288))).unwrap();
    let err = rel_err(&out, &io["out_288"]);
    eprintln!("vit_tiny at 288: error {err:e}");
    assert!(err <= 1e-4, "error at 288 {err:e}");

    let net = vit_loading::load(
        &path,
        VitTiny160::MANIFEST,
        &Device::Cpu,
        VitTiny160::from_tensors,
    )
    .unwrap();
    let out = net.forward(&formula_input((2, 3, 160, 160))).unwrap();
    let err = rel_err(&out, &io["out_160"]);
    eprintln!("vit_tiny at 160: error {err:e}");
    assert!(err <= 1e-4, "error at 160 {err:e}");

    // Without the interpolation, the strict loader refuses the file.
    assert!(VitTiny288::load(&path, &Device::Cpu).is_err());
}

/// `DropPath(0.25)` in training zeroes whole samples at a rate of 0.25 and
/// scales the others by 1 / 0.75; in eval it is the identity.
#[test]
fn drop_path_drops_whole_samples_at_its_rate_and_scales_the_rest() {
    let n = 4000;
    let mut net = DropPathNet::new_seeded(0, &Device::Cpu).unwrap();
    let x = Tensor::ones((n, 3, 5), DType::F32, &Device::Cpu).unwrap();
    let eval = net.forward(&x).unwrap();
    assert_eq!(rel_err(&eval, &x), 0.0);
    net.train();
    let y: Vec<Vec<Vec<f32>>> = net.forward(&x).unwrap().to_vec3().unwrap();
    let keep = (1.0 / 0.75) as f32;
    let mut dropped = 0usize;
    for sample in &y {
        let first = sample[0][0];
        assert!(first == 0.0 || first == keep, "value {first}");
        // One draw per sample: all its values alike.
        assert!(sample.iter().flatten().all(|v| *v == first));
        if first == 0.0 {
            dropped += 1;
        }
    }
    let rate = dropped as f64 / n as f64;
    // Binomial(4000, 0.25): standard deviation 0.0068; 4 of them.
    let sd = (0.25f64 * 0.75 / n as f64).sqrt();
    eprintln!("drop_path: dropped {dropped} of {n} ({rate:.4})");
    assert!((rate - 0.25).abs() < 4.0 * sd, "rate {rate}");
    // The mean is kept (the 1 / (1 - p) scaling): within 4 standard deviations.
    let mean = (n - dropped) as f64 * keep as f64 / n as f64;
    assert!((mean - 1.0).abs() < 4.0 * sd / 0.75, "mean {mean}");
    // Another forward draws again.
    let z = net.forward(&x).unwrap();
    assert!(rel_err(&z, &net.forward(&x).unwrap()) > 0.0);
}

/// The fixture's tensors under `prefix.`, renamed `attn.<key>`.
fn layout_state(prefix: &str) -> HashMap<String, Tensor> {
    tensors("mha_layouts.safetensors")
        .into_iter()
        .filter_map(|(k, v)| {
            Some((
                format!("attn.{}", k.strip_prefix(&format!("{prefix}."))?),
                v,
            ))
        })
        .collect()
}

/// The gradient of `sum(forward(x) * r)` for every variable, by name.
fn layout_grads(
    vars: Vec<(&'static str, Var)>,
    forward: impl FnOnce(&Tensor) -> netdsl::Result<Tensor>,
) -> HashMap<&'static str, Tensor> {
    let t = tensors("mha_layouts.safetensors");
    let r = t["output"].affine(0.5, 0.1).unwrap();
    let loss = forward(&t["input"])
        .unwrap()
        .mul(&r)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    vars.into_iter()
        .map(|(n, v)| (n, grads.get(v.as_tensor()).expect("no gradient").clone()))
        .collect()
}

/// timm's names (`qkv`, `proj`) and Hugging Face's (`q_proj`, `k_proj`,
/// `v_proj`, `out_proj`) load the renamed tensors of one
/// `nn.MultiheadAttention` and give its output; in training, the gradients
/// of the separate projections are the thirds of `in_proj_weight`'s.
#[test]
fn timm_and_hf_layouts_equal_pytorch() {
    let t = tensors("mha_layouts.safetensors");
    let (x, want) = (&t["input"], &t["output"]);
    let names = |m: &[ParamSpec]| m.iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(
        names(MhaTimm::MANIFEST),
        [
            "attn.qkv.weight",
            "attn.qkv.bias",
            "attn.proj.weight",
            "attn.proj.bias"
        ]
    );
    assert_eq!(
        names(MhaHf::MANIFEST),
        [
            "attn.q_proj.weight",
            "attn.q_proj.bias",
            "attn.k_proj.weight",
            "attn.k_proj.bias",
            "attn.v_proj.weight",
            "attn.v_proj.bias",
            "attn.out_proj.weight",
            "attn.out_proj.bias"
        ]
    );
    let dev = Device::Cpu;
    let mut torch = MhaTorch::from_tensors(layout_state("torch"), &dev).unwrap();
    let mut timm = MhaTimm::from_tensors(layout_state("timm"), &dev).unwrap();
    let mut hf = MhaHf::from_tensors(layout_state("hf"), &dev).unwrap();
    for (name, out) in [
        ("torch", torch.forward(x).unwrap()),
        ("timm", timm.forward(x).unwrap()),
        ("hf", hf.forward(x).unwrap()),
    ] {
        let err = rel_err(&out, want);
        eprintln!("layout {name}: error {err:e}");
        assert!(err <= 1e-5, "layout {name}: error {err:e}");
    }

    torch.train();
    timm.train();
    hf.train();
    let g_torch = layout_grads(torch.named_vars().unwrap(), |x| torch.forward(x));
    let g_timm = layout_grads(timm.named_vars().unwrap(), |x| timm.forward(x));
    let g_hf = layout_grads(hf.named_vars().unwrap(), |x| hf.forward(x));
    let close = |a: &Tensor, b: &Tensor, what: &str| {
        let err = rel_err(a, b);
        assert!(err <= 1e-5, "{what}: gradient error {err:e}");
    };
    close(
        &g_timm["attn.qkv.weight"],
        &g_torch["attn.in_proj_weight"],
        "qkv.weight",
    );
    close(
        &g_timm["attn.proj.bias"],
        &g_torch["attn.out_proj.bias"],
        "proj.bias",
    );
    for (i, n) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
        let w = g_torch["attn.in_proj_weight"].narrow(0, 8 * i, 8).unwrap();
        let b = g_torch["attn.in_proj_bias"].narrow(0, 8 * i, 8).unwrap();
        close(&g_hf[format!("attn.{n}.weight").as_str()], &w, n);
        close(&g_hf[format!("attn.{n}.bias").as_str()], &b, n);
    }
    close(
        &g_hf["attn.out_proj.weight"],
        &g_torch["attn.out_proj.weight"],
        "out_proj.weight",
    );
}

/// The example's network at full size against torchvision: a randomly
/// initialised `vit_b_16` written by `scripts/gen_vit_fixtures.py --full
/// DIR` (346 MB, not committed), loaded through the example's path. Run with
/// `NETDSL_VIT_B_16_DIR=DIR cargo test --workspace --test vit -- --ignored`.
#[test]
#[ignore = "needs NETDSL_VIT_B_16_DIR (scripts/gen_vit_fixtures.py --full DIR)"]
fn full_vit_b_16_equals_torchvision() {
    let dir = std::path::PathBuf::from(
        std::env::var("NETDSL_VIT_B_16_DIR").expect("set NETDSL_VIT_B_16_DIR"),
    );
    let net = vit_loading::load(
        &dir.join("vit_b_16.safetensors"),
        example::VitB16::MANIFEST,
        &Device::Cpu,
        example::VitB16::from_tensors,
    )
    .unwrap();
    let want = netdsl::candle::safetensors::load(dir.join("vit_b_16_io.safetensors"), &Device::Cpu)
        .unwrap();
    let out = net.forward(&formula_input((1, 3, 224, 224))).unwrap();
    let err = rel_err(&out, &want["out"]);
    eprintln!("vit_b_16: error {err:e}");
    assert!(err <= 1e-4, "error {err:e}");
}

/// timm's names load: a width-reduced timm `VisionTransformer` (blocks with
/// `attn.qkv`, `attn.proj` and `DropPath`) equals timm's output in eval.
#[test]
fn timm_vit_loads_with_timm_layout_and_equals_timm() {
    let t = tensors("vit_timm_small.safetensors");
    let state: HashMap<String, Tensor> = t
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("state.")?.to_string(), v.clone())))
        .collect();
    let names: Vec<&str> = TimmVitSmall::MANIFEST.iter().map(|s| s.name).collect();
    assert!(names.contains(&"blocks.1.attn.qkv.weight"), "{names:?}");
    let mut net = TimmVitSmall::from_tensors(state, &Device::Cpu).unwrap();
    let out = net.forward(&t["input"]).unwrap();
    let err = rel_err(&out, &t["output"]);
    eprintln!("timm vit_small: error {err:e}");
    assert!(err <= 1e-4, "error {err:e}");
    // In training the second block's branches drop per sample: the output
    // changes, and stays finite.
    net.train();
    let outs: Vec<Tensor> = (0..8).map(|_| net.forward(&t["input"]).unwrap()).collect();
    assert!(outs.iter().any(|o| rel_err(o, &out) > 1e-3));
}

/// DropPath's gradient is its mask: 0 for a dropped sample, 1 / (1 - p)
/// for a kept one.
#[test]
fn drop_path_gradient_is_the_mask() {
    let mut net = DropPathNet::new_seeded(1, &Device::Cpu).unwrap();
    net.train();
    let x = Var::from_tensor(&Tensor::ones((64, 3, 5), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let y = net.forward(x.as_tensor()).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let g = grads.get(x.as_tensor()).expect("no gradient for the input");
    // Here the forward's output is the mask itself (x is all ones).
    assert_eq!(rel_err(g, &y), 0.0);
    let kept: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
    assert!(kept.contains(&0.0) && kept.contains(&(1.0 / 0.75)));
}
