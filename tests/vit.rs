//! The vision transformer in `network!` with torchvision's layout:
//! ViT-B/16's manifest (names and shapes, no weights allocated) equals
//! `torchvision.models.vit_b_16()`'s state_dict, and a width-reduced ViT
//! equals torchvision's `VisionTransformer` of the same sizes in eval mode.
//!
//! Fixtures: `scripts/gen_vit_fixtures.py` writes
//! `tests/fixtures/vit_b_16_manifest.json` and
//! `tests/fixtures/vit_small.safetensors`.

mod common;

use std::collections::HashMap;

use netdsl::candle::Tensor;
use netdsl::{network, ParamSource, ParamSpec};

use common::{fixture, rel_err, tensors};

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

    /// ViT-B/16 (Dosovitskiy et al., 2021) as torchvision's `vit_b_16`.
    pub VitB16(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv_proj: PatchEmbed(3 -> 768, patch = 16)           : [B, 196, 768]
          -> class_token: ClassToken                               : [B, 197, 768]
          -> encoder.pos_embedding: PosEmbedding
          -> encoder.dropout: Dropout(0.0)
          -> encoder.layers: seq {
                 encoder_layer_0: EncoderBlock(12, 3072) -> encoder_layer_1: EncoderBlock(12, 3072)
              -> encoder_layer_2: EncoderBlock(12, 3072) -> encoder_layer_3: EncoderBlock(12, 3072)
              -> encoder_layer_4: EncoderBlock(12, 3072) -> encoder_layer_5: EncoderBlock(12, 3072)
              -> encoder_layer_6: EncoderBlock(12, 3072) -> encoder_layer_7: EncoderBlock(12, 3072)
              -> encoder_layer_8: EncoderBlock(12, 3072) -> encoder_layer_9: EncoderBlock(12, 3072)
              -> encoder_layer_10: EncoderBlock(12, 3072) -> encoder_layer_11: EncoderBlock(12, 3072)
             }
          -> encoder.ln: LayerNorm(eps = 1e-6)
          -> Select(dim = 1, index = 0)                            : [B, 768]
          -> heads.head: Linear(1000)
    }

    /// torchvision's `VisionTransformer(image_size = 32, patch_size = 8,
    /// num_layers = 2, num_heads = 2, hidden_dim = 16, mlp_dim = 32,
    /// num_classes = 10)`.
    pub VitSmall(x: [B, 3, 32, 32]) -> [B, 10] {
        x -> conv_proj: PatchEmbed(16, patch = 8)                  : [B, 16, 16]
          -> class_token: ClassToken
          -> encoder.pos_embedding: PosEmbedding
          -> encoder.dropout: Dropout(0.0)
          -> encoder.layers: seq { encoder_layer_0: EncoderBlock(2, 32) -> encoder_layer_1: EncoderBlock(2, 32) }
          -> encoder.ln: LayerNorm(eps = 1e-6)
          -> Select(1, 0)
          -> heads.head: Linear(10)
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
    let mut ours: Vec<(String, Vec<usize>)> = VitB16::MANIFEST
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
    assert_eq!(VitB16::PARAMETERS, 86_567_656);
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
