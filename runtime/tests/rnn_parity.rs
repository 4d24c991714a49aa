//! Parity with PyTorch of `netdsl_runtime::rnn` (`nn.RNN`, `nn.LSTM`,
//! `nn.GRU`): every cell type x {1, 2 layers} x {uni, bidirectional} x
//! {batch-first, time-major} x {zero, given initial states} x {equal,
//! variable lengths}, ReLU RNNs and projected LSTMs, one larger case per
//! type, and the gradients of one training step per type.
//!
//! The fixture `tests/fixtures/recurrent.safetensors` (repo root) comes
//! from `scripts/gen_recurrent_fixtures.py`, which documents the cases and
//! the formula every input and parameter is rebuilt from here.
//!
//! Tolerance: `1e-4 * max(1, max|torch|)` per compared tensor.

use std::collections::HashMap;
use std::sync::OnceLock;

use netdsl_runtime::candle::{DType, Device, Tensor, Var};
use netdsl_runtime::layers::RnnParams;
use netdsl_runtime::{rnn, Cell, Generator, RnnInputs, RnnSpec};

mod common;

use common::{formula, rel_err};

fn fixtures() -> &'static HashMap<String, Tensor> {
    static F: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    F.get_or_init(|| common::load_fixture("recurrent.safetensors"))
}

/// A case's configuration, read from its name (see the script's `case_name`).
#[derive(Clone, Copy, Debug)]
struct Case {
    spec: RnnSpec,
    init: bool,
    var: bool,
    b: usize,
    t: usize,
    f: usize,
}

fn parse(name: &str) -> Case {
    let (big, rest) = match name.strip_prefix("big_") {
        Some(r) => (true, r),
        None => (false, name.strip_prefix("grad_").unwrap_or(name)),
    };
    let cells = [
        ("rnn_tanh", Cell::RnnTanh, 0),
        ("rnn_relu", Cell::RnnRelu, 0),
        ("lstmp3", Cell::Lstm, 3),
        ("lstm", Cell::Lstm, 0),
        ("gru", Cell::Gru, 0),
    ];
    let (tag, cell, proj) = cells
        .iter()
        .copied()
        .find(|(tag, ..)| rest.starts_with(tag))
        .unwrap_or_else(|| panic!("{name}: unknown cell"));
    let (b, t, f, hidden) = if big { (4, 20, 16, 32) } else { (3, 6, 3, 5) };
    if big {
        return Case {
            spec: RnnSpec {
                cell,
                hidden,
                proj,
                layers: 2,
                bidirectional: true,
                batch_first: true,
                dropout: 0.0,
            },
            init: false,
            var: false,
            b,
            t,
            f,
        };
    }
    let parts: Vec<&str> = rest[tag.len() + 1..].split('_').collect();
    let [l, dir, layout, init, var] = parts[..] else {
        panic!("{name}: bad case name");
    };
    Case {
        spec: RnnSpec {
            cell,
            hidden,
            proj,
            layers: l[1..].parse().unwrap(),
            bidirectional: dir == "bi",
            batch_first: layout == "bf",
            dropout: 0.0,
        },
        init: init == "h0",
        var: var == "var",
        b,
        t,
        f,
    }
}

/// The parameters of `spec` over `f` input features, by state_dict name,
/// as variables.
fn params(spec: &RnnSpec, f: usize) -> (RnnParams, Vec<(String, Var)>) {
    let dirs = if spec.bidirectional { 2 } else { 1 };
    let g = spec.cell.gates() * spec.hidden;
    let hout = spec.out_size();
    let mut p = RnnParams::default();
    let mut named = Vec::new();
    let mut add = |name: String, shape: &[usize], list: &mut Vec<Tensor>| {
        let v = Var::from_tensor(&formula(shape, &name)).unwrap();
        list.push(v.as_tensor().clone());
        named.push((name, v));
    };
    for l in 0..spec.layers {
        for d in 0..dirs {
            let sfx = format!("l{l}{}", if d == 1 { "_reverse" } else { "" });
            let input = if l == 0 { f } else { dirs * hout };
            add(format!("weight_ih_{sfx}"), &[g, input], &mut p.weight_ih);
            add(format!("weight_hh_{sfx}"), &[g, hout], &mut p.weight_hh);
            add(format!("bias_ih_{sfx}"), &[g], &mut p.bias_ih);
            add(format!("bias_hh_{sfx}"), &[g], &mut p.bias_hh);
            if spec.proj > 0 {
                add(
                    format!("weight_hr_{sfx}"),
                    &[hout, spec.hidden],
                    &mut p.weight_hr,
                );
            }
        }
    }
    (p, named)
}

fn check(name: &str) {
    run_case(name, false);
    run_case(name, true);
}

/// One case; `fast`: in inference with nothing tracked, the runtime's
/// fused loop (otherwise the differentiable candle path).
fn run_case(name: &str, fast: bool) {
    let fx = fixtures();
    let get = |k: &str| fx.get(&format!("{name}.{k}")).cloned();
    let c = parse(name);
    let spec = c.spec;
    let dirs = if spec.bidirectional { 2 } else { 1 };
    let n = spec.layers * dirs;
    let (p, named) = params(&spec, c.f);
    let x = formula(&[c.b, c.t, c.f], "x");
    let x = if spec.batch_first {
        x
    } else {
        x.transpose(0, 1).unwrap().contiguous().unwrap()
    };
    let x = Var::from_tensor(&x).unwrap();
    let h0 = Var::from_tensor(&formula(&[n, c.b, spec.out_size()], "h0")).unwrap();
    let c0 = Var::from_tensor(&formula(&[n, c.b, spec.hidden], "c0")).unwrap();
    let lengths = Tensor::new(&[6u32, 2, 4], &Device::Cpu).unwrap();
    let lstm = spec.cell == Cell::Lstm;
    // `fast`: nothing tracked and not training, so the inference loop runs
    // (the parameters are read detached there).
    let plain = |v: &Var| {
        if fast {
            v.as_tensor().detach()
        } else {
            v.as_tensor().clone()
        }
    };
    let (xt, h0t, c0t) = (plain(&x), plain(&h0), plain(&c0));
    let inputs = RnnInputs {
        h0: c.init.then_some(&h0t),
        c0: (c.init && lstm).then_some(&c0t),
        lengths: c.var.then_some(&lengths),
    };
    let rng = Generator::seeded(0);
    let out = rnn(name_static(name), &xt, &p, spec, inputs, !fast, &rng).unwrap();
    let tol = 1e-4;
    let compare = |what: &str, got: &Tensor| {
        let want = get(what).unwrap_or_else(|| panic!("{name}: no `{what}` in the fixture"));
        let e = rel_err(got, &want);
        assert!(e < tol, "{name}.{what} (fast: {fast}): relative error {e}");
    };
    compare("y", &out.output);
    compare("h", &out.h);
    match &out.c {
        Some(cn) => compare("c", cn),
        None => assert!(get("c").is_none(), "{name}: PyTorch gave c_n"),
    }
    if fast || get("grad.x").is_none() {
        return;
    }
    let mut loss = out
        .output
        .mul(&formula(out.output.dims(), "Ry"))
        .unwrap()
        .sum_all()
        .unwrap()
        .add(
            &out.h
                .mul(&formula(out.h.dims(), "Rh"))
                .unwrap()
                .sum_all()
                .unwrap(),
        )
        .unwrap();
    if let Some(cn) = &out.c {
        loss = loss
            .add(
                &cn.mul(&formula(cn.dims(), "Rc"))
                    .unwrap()
                    .sum_all()
                    .unwrap(),
            )
            .unwrap();
    }
    let grads = loss.backward().unwrap();
    let grad = |v: &Var| grads.get(v.as_tensor()).cloned().unwrap();
    compare("grad.x", &grad(&x));
    compare("grad.h0", &grad(&h0));
    if lstm {
        compare("grad.c0", &grad(&c0));
    }
    for (pname, v) in &named {
        compare(&format!("grad.{pname}"), &grad(v));
    }
}

/// Layer names are `&'static str` (generated code passes literals).
fn name_static(name: &str) -> &'static str {
    Box::leak(name.to_string().into_boxed_str())
}

fn cases(filter: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = fixtures()
        .keys()
        .filter_map(|k| k.strip_suffix(".y"))
        .filter(|n| filter(n))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

#[test]
fn rnn_every_combination() {
    let names = cases(|n| n.starts_with("rnn_"));
    assert_eq!(names.len(), 32 + 3);
    names.iter().for_each(|n| check(n));
}

#[test]
fn lstm_every_combination() {
    let names = cases(|n| n.starts_with("lstm"));
    assert_eq!(names.len(), 32 + 3);
    names.iter().for_each(|n| check(n));
}

/// The LSTM cases on a one-thread pool: inference runs the fused LSTM
/// step where the CPU has AVX-512 (`lstm_step`), which a pool of several
/// threads keeps for layers of at least 64 hidden units.
#[test]
fn lstm_every_combination_on_one_thread() {
    let names = cases(|n| n.starts_with("lstm") || n == "big_lstm");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| names.iter().for_each(|n| run_case(n, true)));
}

#[test]
fn gru_every_combination() {
    let names = cases(|n| n.starts_with("gru"));
    assert_eq!(names.len(), 32);
    names.iter().for_each(|n| check(n));
}

#[test]
fn larger_cases() {
    let names = cases(|n| n.starts_with("big_"));
    assert_eq!(names.len(), 3);
    names.iter().for_each(|n| check(n));
}

#[test]
fn training_step_gradients() {
    let names = cases(|n| n.starts_with("grad_"));
    assert_eq!(names.len(), 4);
    names.iter().for_each(|n| check(n));
}

#[test]
fn bad_inputs_are_errors_naming_the_layer() {
    let spec = RnnSpec {
        cell: Cell::Lstm,
        hidden: 5,
        proj: 0,
        layers: 1,
        bidirectional: false,
        batch_first: true,
        dropout: 0.0,
    };
    let (p, _) = params(&spec, 3);
    let rng = Generator::seeded(0);
    let x = formula(&[2, 4, 3], "x");
    let run = |x: &Tensor, inputs: RnnInputs| {
        rnn("enc", x, &p, spec, inputs, false, &rng)
            .unwrap_err()
            .to_string()
    };
    let e = run(&formula(&[2, 4, 7], "x"), RnnInputs::default());
    assert!(
        e.contains("`enc` expects 3 input features, but the input has 7"),
        "{e}"
    );
    let h0 = formula(&[2, 2, 5], "h0");
    let e = run(
        &x,
        RnnInputs {
            h0: Some(&h0),
            ..Default::default()
        },
    );
    assert!(e.contains("h_0 must be [1, 2, 5]"), "{e}");
    let lengths = Tensor::new(&[4u32, 5], &Device::Cpu).unwrap();
    let e = run(
        &x,
        RnnInputs {
            lengths: Some(&lengths),
            ..Default::default()
        },
    );
    assert!(e.contains("sequence 1 has length 5"), "{e}");
    let e = run(&formula(&[2, 3], "x"), RnnInputs::default());
    assert!(e.contains("takes a 3-d sequence"), "{e}");
}

#[test]
fn dropout_between_layers_drops_at_the_rate_and_rescales() {
    // A 2-layer RNN whose second layer passes its input through: with
    // identity-like weights the statistics of the dropped first-layer output
    // show in the second layer's input projection. Checked directly: the
    // share of exact zeros among the first layer's outputs seen by layer 2.
    let spec = RnnSpec {
        cell: Cell::RnnRelu,
        hidden: 64,
        proj: 0,
        layers: 2,
        bidirectional: false,
        batch_first: true,
        dropout: 0.25,
    };
    let dev = Device::Cpu;
    // Layer 0: h = relu(x W^T + 1) with W = 0 → every output is exactly 1.
    // Layer 1: weight_ih = identity, everything else 0 → output = relu(dropped).
    let g = 64;
    let mut p = RnnParams::default();
    p.weight_ih
        .push(Tensor::zeros((g, 3), DType::F32, &dev).unwrap());
    p.weight_hh
        .push(Tensor::zeros((g, g), DType::F32, &dev).unwrap());
    p.bias_ih.push(Tensor::ones(g, DType::F32, &dev).unwrap());
    p.bias_hh.push(Tensor::zeros(g, DType::F32, &dev).unwrap());
    p.weight_ih.push(Tensor::eye(g, DType::F32, &dev).unwrap());
    p.weight_hh
        .push(Tensor::zeros((g, g), DType::F32, &dev).unwrap());
    p.bias_ih.push(Tensor::zeros(g, DType::F32, &dev).unwrap());
    p.bias_hh.push(Tensor::zeros(g, DType::F32, &dev).unwrap());
    let x = Tensor::zeros((32, 50, 3), DType::F32, &dev).unwrap();
    let rng = Generator::seeded(7);
    let y = rnn("drop", &x, &p, spec, RnnInputs::default(), true, &rng)
        .unwrap()
        .output
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((zeros - 0.25).abs() < 0.01, "dropped share {zeros}");
    let kept: Vec<f32> = y.into_iter().filter(|&v| v != 0.0).collect();
    assert!(
        kept.iter().all(|&v| (v - 1.0 / 0.75).abs() < 1e-5),
        "kept values are 1/(1-p)"
    );
    // In eval mode nothing is dropped.
    let y = rnn("drop", &x, &p, spec, RnnInputs::default(), false, &rng)
        .unwrap()
        .output;
    let min: f32 = y.min_all().unwrap().to_scalar().unwrap();
    assert_eq!(min, 1.0);
}
