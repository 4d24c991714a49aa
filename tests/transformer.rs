//! The Transformer encoder written in `network!` against PyTorch:
//! `nn.TransformerEncoderLayer` (batch first; post-norm with ReLU, and
//! `norm_first` with GELU) and `nn.TransformerEncoder` (a stack of two), in
//! eval mode, and one training step's gradients. Parameter names are
//! PyTorch's (`self_attn.in_proj_weight`, `self_attn.out_proj.weight`,
//! `linear1.weight`, `norm1.weight`, ..), so the state_dicts load as they
//! are.
//!
//! Fixtures: `scripts/gen_transformer_fixtures.py` writes
//! `tests/fixtures/transformer.safetensors`; the torch modules are held as
//! `layer` (or `encoder`) of a wrapper, hence the `layer.` prefix.

mod common;

use std::collections::HashMap;

use netdsl::candle::{Tensor, Var};
use netdsl::{network, ParamSource, ParamSpec};

use common::{rel_err, tensors};

network! {
    /// `nn.TransformerEncoderLayer(E, heads, ff, dropout = p,
    /// batch_first = True)`: post-norm, ReLU.
    pub block EncoderLayer(x: [B, T, E], heads: usize, ff: usize, p: f64 = 0.1) -> [B, T, E] {
        let a = x -> self_attn: MultiHeadAttention(heads = heads) -> dropout1: Dropout(p);
        let y = (x + a) -> norm1: LayerNorm(eps = 1e-5);
        let f = y -> linear1: Linear(ff) -> relu -> dropout: Dropout(p)
                  -> linear2: Linear(E) -> dropout2: Dropout(p);
        (y + f) -> norm2: LayerNorm
    }

    /// The same with `norm_first = True, activation = "gelu"`.
    pub block PreNormLayer(x: [B, T, E], heads: usize, ff: usize, p: f64 = 0.1) -> [B, T, E] {
        let a = x -> norm1: LayerNorm -> self_attn: MultiHeadAttention(heads = heads) -> dropout1: Dropout(p);
        let y = x + a;
        let f = y -> norm2: LayerNorm -> linear1: Linear(ff) -> gelu -> dropout: Dropout(p)
                  -> linear2: Linear(E) -> dropout2: Dropout(p);
        y + f
    }

    pub Post(x: [B, 6, 16]) -> [B, 6, 16] { x -> layer: EncoderLayer(heads = 4, ff = 32) }
    pub PostGrad(x: [B, 6, 16]) -> [B, 6, 16] { x -> layer: EncoderLayer(heads = 4, ff = 32, p = 0.0) }
    pub Pre(x: [B, 6, 16]) -> [B, 6, 16] { x -> layer: PreNormLayer(heads = 4, ff = 32) }
    pub PreGrad(x: [B, 6, 16]) -> [B, 6, 16] { x -> layer: PreNormLayer(heads = 4, ff = 32, p = 0.0) }
    /// `nn.TransformerEncoder(layer, 2)`: `encoder.layers.0`, `encoder.layers.1`.
    pub Stack(x: [B, 6, 16]) -> [B, 6, 16] {
        x -> encoder.layers: repeat 2 EncoderLayer(heads = 4, ff = 32)
    }

    /// Causal self-attention: position `i` attends to `0..=i` only.
    pub CausalAttn(x: [B, 5, 8]) -> [B, 5, 8] { x -> attn: MultiHeadAttention(8, 2, causal = true) }

    /// One encoder layer written directly in a network: its state_dict is
    /// `nn.TransformerEncoderLayer`'s own, without a prefix.
    pub Bare(x: [B, T, 16]) -> [B, T, 16] {
        let a = x -> self_attn: MultiHeadAttention(16, 4) -> dropout1: Dropout(0.1);
        let y = (x + a) -> norm1: LayerNorm(16);
        let f = y -> linear1: Linear(32) -> relu -> dropout: Dropout(0.1)
                  -> linear2: Linear(16) -> dropout2: Dropout(0.1);
        (y + f) -> norm2: LayerNorm(16)
    }
}

/// The case's tensors under `<case>.state.`, by name.
struct Source(HashMap<String, Tensor>);

impl ParamSource for Source {
    fn take(&mut self, spec: &ParamSpec) -> netdsl::Result<Tensor> {
        self.0.remove(spec.name).ok_or_else(|| {
            netdsl::candle::Error::Msg(format!("the fixture has no `{}`", spec.name)).into()
        })
    }
}

fn fixtures() -> &'static HashMap<String, Tensor> {
    static F: std::sync::OnceLock<HashMap<String, Tensor>> = std::sync::OnceLock::new();
    F.get_or_init(|| tensors("transformer.safetensors"))
}

fn get(key: &str) -> &'static Tensor {
    fixtures()
        .get(key)
        .unwrap_or_else(|| panic!("no `{key}`: rerun scripts/gen_transformer_fixtures.py"))
}

fn with_prefix(prefix: &str) -> HashMap<String, Tensor> {
    fixtures()
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
        .collect()
}

/// `from_source` with the case's state_dict; every tensor used.
fn build<N>(case: &str, from: impl FnOnce(&mut Source) -> netdsl::Result<N>) -> N {
    let mut source = Source(with_prefix(&format!("{case}.state.")));
    let net = from(&mut source).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(source.0.is_empty(), "{case}: unused: {:?}", source.0.keys());
    net
}

fn check_eval(case: &str, out: Tensor) {
    let err = rel_err(&out, get(&format!("{case}.output")));
    eprintln!("{case}: eval error {err:e}");
    assert!(err <= 1e-4, "{case}: eval error {err:e}");
}

#[test]
fn post_norm_layer_equals_pytorch() {
    let net = build("post", Post::from_source);
    check_eval("post", net.forward(get("post.input")).unwrap());
}

#[test]
fn norm_first_gelu_layer_equals_pytorch() {
    let net = build("pre", Pre::from_source);
    check_eval("pre", net.forward(get("pre.input")).unwrap());
}

#[test]
fn stack_equals_pytorch() {
    let net = build("stack", Stack::from_source);
    check_eval("stack", net.forward(get("stack.input")).unwrap());
}

/// The unprefixed layer loads `nn.TransformerEncoderLayer`'s own
/// state_dict (the fixture's without `layer.`) and gives its output.
#[test]
fn bare_layer_loads_pytorch_names() {
    let state: HashMap<String, Tensor> = with_prefix("post.state.layer.");
    let mut names: Vec<&str> = Bare::MANIFEST.iter().map(|s| s.name).collect();
    names.sort_unstable();
    let mut want: Vec<&str> = state.keys().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(names, want);
    let net = Bare::from_source(&mut Source(state)).unwrap();
    check_eval("post", net.forward(get("post.input")).unwrap());
}

/// One training step (dropout 0): the loss, the input's gradient and every
/// parameter's gradient vs PyTorch's.
fn check_grads(
    case: &str,
    vars: Vec<(&'static str, Var)>,
    forward: impl FnOnce(&Tensor) -> netdsl::Result<Tensor>,
) {
    let x = Var::from_tensor(get(&format!("{case}.input"))).unwrap();
    let out = forward(x.as_tensor()).unwrap();
    let loss = out
        .mul(get(&format!("{case}.r")))
        .unwrap()
        .sum_all()
        .unwrap();
    let err = rel_err(&loss, get(&format!("{case}.loss")));
    assert!(err <= 1e-4, "{case}: loss error {err:e}");
    let grads = loss.backward().unwrap();
    let gx = grads.get(x.as_tensor()).expect("no gradient for the input");
    let err = rel_err(gx, get(&format!("{case}.grad_input")));
    assert!(err <= 1e-4, "{case}: input gradient error {err:e}");
    let mut want = with_prefix(&format!("{case}.grad."));
    assert_eq!(
        vars.len(),
        want.len(),
        "{case}: variables vs torch parameters"
    );
    for (name, var) in vars {
        let w = want
            .remove(name)
            .unwrap_or_else(|| panic!("{case}: torch has no `{name}`"));
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{case}: no gradient for `{name}`"));
        let err = rel_err(g, &w);
        eprintln!("{case}: grad {name} error {err:e}");
        assert!(err <= 1e-4, "{case}: gradient of `{name}`: error {err:e}");
    }
}

#[test]
fn post_norm_training_step_gradients_equal_pytorch() {
    let mut net = build("post_grad", PostGrad::from_source);
    net.train();
    let vars = net.named_vars().unwrap();
    check_grads("post_grad", vars, |x| net.forward(x));
}

#[test]
fn norm_first_training_step_gradients_equal_pytorch() {
    let mut net = build("pre_grad", PreGrad::from_source);
    net.train();
    let vars = net.named_vars().unwrap();
    check_grads("pre_grad", vars, |x| net.forward(x));
}

/// Training and inference give the same output with dropout off (the
/// fused softmax and the differentiable one agree).
#[test]
fn training_and_inference_agree_without_dropout() {
    let mut net = build("post_grad", PostGrad::from_source);
    let x = get("post_grad.input");
    let eval = net.forward(x).unwrap();
    net.train();
    let train = net.forward(x).unwrap();
    assert!(rel_err(&train, &eval) <= 1e-5);
}

/// End to end through a file: `nn.TransformerEncoderLayer`'s state_dict
/// (nested names `self_attn.in_proj_weight`, `self_attn.out_proj.weight`,
/// ..) written as safetensors loads with `load`, gives PyTorch's output, and
/// `save` writes the same names back.
#[test]
fn pytorch_state_dict_file_loads_and_saves_nested_names() {
    let dir = std::env::temp_dir().join(format!("netdsl-transformer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("encoder_layer.safetensors");
    let state = with_prefix("post.state.layer.");
    netdsl::candle::safetensors::save(&state, &path).unwrap();
    let net = Bare::load(&path, &netdsl::candle::Device::Cpu).unwrap();
    check_eval("post", net.forward(get("post.input")).unwrap());
    assert_eq!(
        net.self_attn.out_proj.weight.to_vec2::<f32>().unwrap(),
        state["self_attn.out_proj.weight"].to_vec2::<f32>().unwrap()
    );
    let back = dir.join("saved.safetensors");
    net.save(&back).unwrap();
    let saved = netdsl::candle::safetensors::load(&back, &netdsl::candle::Device::Cpu).unwrap();
    let mut names: Vec<&String> = saved.keys().collect();
    names.sort();
    let mut want: Vec<&String> = state.keys().collect();
    want.sort();
    assert_eq!(names, want);
    for (k, v) in &state {
        assert_eq!(rel_err(&saved[k], v), 0.0, "{k}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

network! {
    /// A sinusoidal position encoding over a symbolic length.
    pub Positions(x: [B, T, 6]) -> [B, T, 6] { x -> SinusoidalEncoding }
}

/// Zeros in give the encoding itself, for every sample: position 1, pair 1
/// is `sin(1 / 10000^(2/6))`; the second call reuses the cached table.
#[test]
fn sinusoidal_encoding_adds_the_table() {
    let dev = netdsl::candle::Device::Cpu;
    let net = Positions::new_seeded(0, &dev).unwrap();
    let x = Tensor::zeros((2, 5, 6), netdsl::candle::DType::F32, &dev).unwrap();
    for _ in 0..2 {
        let y = net.forward(&x).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(y.len(), 2);
        for sample in &y {
            assert_eq!(sample[0], [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
            let want = (1.0f64 / 10000f64.powf(2.0 / 6.0)).sin() as f32;
            assert!((sample[1][2] - want).abs() < 1e-7, "{}", sample[1][2]);
            assert!((sample[4][1] - 4f32.cos()).abs() < 1e-6);
        }
    }
    assert_eq!(Positions::PARAMETERS, 0);
}

/// `causal = true`: changing the last two positions of the input leaves
/// the first three outputs unchanged and changes the last two.
#[test]
fn causal_attention_does_not_look_ahead() {
    let dev = netdsl::candle::Device::Cpu;
    let net = CausalAttn::new_seeded(3, &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 5, 8), &dev).unwrap();
    let noise = Tensor::randn(0f32, 1.0, (2, 2, 8), &dev).unwrap();
    let head = x.narrow(1, 0, 3).unwrap();
    let tail = x.narrow(1, 3, 2).unwrap().add(&noise).unwrap();
    let x2 = Tensor::cat(&[&head, &tail], 1).unwrap();
    let (y, y2) = (net.forward(&x).unwrap(), net.forward(&x2).unwrap());
    let diff = common::max_abs_diff;
    assert!(diff(&y.narrow(1, 0, 3).unwrap(), &y2.narrow(1, 0, 3).unwrap()) < 1e-6);
    assert!(diff(&y.narrow(1, 3, 2).unwrap(), &y2.narrow(1, 3, 2).unwrap()) > 1e-3);
}
