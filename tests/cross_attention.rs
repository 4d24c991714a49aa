//! Cross-attention and key padding in `network!`: `MultiHeadAttention`
//! with `memory = ..` (keys and values from another sequence) and
//! `key_lengths = ..` (PyTorch's `key_padding_mask` from lengths), and a
//! Transformer decoder layer written as a block, equal to
//! `nn.MultiheadAttention` and `nn.TransformerDecoderLayer`
//! (`scripts/gen_cross_attention_fixtures.py`; inputs and weights from the
//! formula of `scripts/gen_recurrent_fixtures.py`).

mod common;

use common::{formula, formula_weights, rel_err, tensors};
use netdsl::candle::{Device, Tensor};
use netdsl::network;

network! {
    pub Cross(q: [B, 5, 8], mem: [B, S, 8]) -> [B, 5, 8] {
        q -> attn: MultiHeadAttention(heads = 2, memory = mem)
    }
    pub CrossPad(q: [B, 5, 8], mem: [B, S, 8], lens: [B] u32) -> [B, 5, 8] {
        q -> attn: MultiHeadAttention(heads = 2, memory = mem, key_lengths = lens)
    }
    /// `nn.MultiheadAttention(8, 2, kdim = 6, vdim = 6)`: a memory of
    /// another width, keys and values projected from it.
    pub CrossKdim(q: [B, 5, 8], mem: [B, S, 6]) -> [B, 5, 8] {
        q -> attn: MultiHeadAttention(heads = 2, memory = mem, kdim = 6)
    }
    /// The same with Hugging Face's names (`k_proj.weight` [8, 6]).
    pub CrossKdimHf(q: [B, 5, 8], mem: [B, S, 6]) -> [B, 5, 8] {
        q -> attn: MultiHeadAttention(heads = 2, memory = mem, kdim = 6, layout = hf)
    }
    pub SelfPad(x: [B, T, 8], lens: [B] u32) -> [B, T, 8] {
        x -> attn: MultiHeadAttention(heads = 2, key_lengths = lens)
    }

    /// `nn.TransformerDecoderLayer(E, heads, ff, batch_first = True)`,
    /// post-norm, its state_dict names.
    pub block DecoderLayer(x: [B, T, E], mem: [B, S, E], heads: usize, ff: usize, p: f64 = 0.1) -> [B, T, E] {
        let a = x -> self_attn: MultiHeadAttention(heads = heads, causal = true) -> dropout1: Dropout(p);
        let y = (x + a) -> norm1: LayerNorm(eps = 1e-5);
        let b = y -> multihead_attn: MultiHeadAttention(heads = heads, memory = mem) -> dropout2: Dropout(p);
        let z = (y + b) -> norm2: LayerNorm(eps = 1e-5);
        let f = z -> linear1: Linear(ff) -> relu -> dropout: Dropout(p) -> linear2: Linear(E) -> dropout3: Dropout(p);
        (z + f) -> norm3: LayerNorm(eps = 1e-5)
    }

    pub Decoder(tgt: [B, T, 8], memory: [B, S, 8]) -> [B, T, 8] {
        tgt -> dec: DecoderLayer(memory, heads = 2, ff = 16)
    }
}

fn check(got: &Tensor, case: &str) {
    let want = tensors("cross_attention.safetensors")[&format!("{case}.y")].clone();
    let e = rel_err(got, &want);
    assert!(e < 1e-4, "{case}: relative error {e}");
}

#[test]
fn cross_attention_and_key_padding_equal_pytorch() {
    let dev = Device::Cpu;
    let (q, mem) = (formula(&[2, 5, 8], "q"), formula(&[2, 7, 8], "mem"));
    let net = Cross::from_tensors(formula_weights(Cross::MANIFEST), &dev).unwrap();
    check(&net.forward(&q, &mem).unwrap(), "cross");
    let net = CrossPad::from_tensors(formula_weights(CrossPad::MANIFEST), &dev).unwrap();
    let lens = Tensor::new(&[7u32, 4], &dev).unwrap();
    check(&net.forward(&q, &mem, &lens).unwrap(), "cross_pad");
    let net = SelfPad::from_tensors(formula_weights(SelfPad::MANIFEST), &dev).unwrap();
    let lens = Tensor::new(&[5u32, 3], &dev).unwrap();
    check(&net.forward(&q, &lens).unwrap(), "self_pad");
    // A length past the keys is an error, not a panic.
    let bad = Tensor::new(&[9u32, 3], &dev).unwrap();
    let e = net.forward(&q, &bad).unwrap_err().to_string();
    assert!(e.contains("sequence 0 has length 9"), "{e}");
}

#[test]
fn a_transformer_decoder_layer_block_equals_pytorch() {
    let dev = Device::Cpu;
    let names: Vec<&str> = Decoder::MANIFEST.iter().map(|p| p.name).collect();
    for n in [
        "dec.self_attn.in_proj_weight",
        "dec.multihead_attn.out_proj.bias",
        "dec.norm3.weight",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    let net = Decoder::from_tensors(formula_weights(Decoder::MANIFEST), &dev).unwrap();
    let (q, mem) = (formula(&[2, 5, 8], "q"), formula(&[2, 7, 8], "mem"));
    check(&net.forward(&q, &mem).unwrap(), "decoder");
}

network! {
    pub CrossMaskIds(q: [B, 5, 8], mem: [B, 7, 8], m: [5, 7] u8, lens: [B] u32) -> [B, 5, 8] {
        q -> attn: MultiHeadAttention(heads = 2, memory = mem, mask = m, key_lengths = lens)
    }
    pub CrossMaskFloat(q: [B, 5, 8], mem: [B, 7, 8], m: [5, 7]) -> [B, 5, 8] {
        q -> attn: MultiHeadAttention(heads = 2, memory = mem, attn_mask = m)
    }
}

#[test]
fn boolean_and_additive_masks_equal_pytorch() {
    let dev = Device::Cpu;
    let (q, mem) = (formula(&[2, 5, 8], "q"), formula(&[2, 7, 8], "mem"));
    let fx = tensors("cross_attention.safetensors");
    let m = fx["mask_bool"].to_dtype(netdsl::candle::DType::U8).unwrap();
    let lens = Tensor::new(&[7u32, 4], &dev).unwrap();
    let net = CrossMaskIds::from_tensors(formula_weights(CrossMaskIds::MANIFEST), &dev).unwrap();
    check(
        &net.forward(&q, &mem, &m, &lens).unwrap(),
        "cross_mask_bool",
    );
    let net =
        CrossMaskFloat::from_tensors(formula_weights(CrossMaskFloat::MANIFEST), &dev).unwrap();
    check(
        &net.forward(&q, &mem, &formula(&[5, 7], "fmask")).unwrap(),
        "cross_mask_float",
    );
}

#[test]
fn a_memory_of_another_width_equals_pytorch_kdim() {
    let dev = Device::Cpu;
    let (q, mem) = (formula(&[2, 5, 8], "q"), formula(&[2, 7, 6], "memk"));
    let names: Vec<&str> = CrossKdim::MANIFEST.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "attn.q_proj_weight",
            "attn.k_proj_weight",
            "attn.v_proj_weight",
            "attn.in_proj_bias",
            "attn.out_proj.weight",
            "attn.out_proj.bias"
        ]
    );
    let weights = formula_weights(CrossKdim::MANIFEST);
    let net = CrossKdim::from_tensors(weights.clone(), &dev).unwrap();
    check(&net.forward(&q, &mem).unwrap(), "cross_kdim");
    // Hugging Face's layout holds the same projections under other names.
    let bias = &weights["attn.in_proj_bias"];
    let third = |i: usize| bias.narrow(0, 8 * i, 8).unwrap();
    let hf = [
        ("attn.q_proj.weight", weights["attn.q_proj_weight"].clone()),
        ("attn.q_proj.bias", third(0)),
        ("attn.k_proj.weight", weights["attn.k_proj_weight"].clone()),
        ("attn.k_proj.bias", third(1)),
        ("attn.v_proj.weight", weights["attn.v_proj_weight"].clone()),
        ("attn.v_proj.bias", third(2)),
        (
            "attn.out_proj.weight",
            weights["attn.out_proj.weight"].clone(),
        ),
        ("attn.out_proj.bias", weights["attn.out_proj.bias"].clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let net = CrossKdimHf::from_tensors(hf, &dev).unwrap();
    check(&net.forward(&q, &mem).unwrap(), "cross_kdim");
    // A memory of the wrong width at run time is an error, not a panic.
    let wrong = formula(&[2, 7, 5], "memk");
    assert!(net.forward(&q, &wrong).is_err());
}
