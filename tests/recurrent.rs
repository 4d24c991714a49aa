//! `RNN`, `LSTM` and `GRU` in `network!`: PyTorch's state_dict names and
//! shapes, the output sequence and the final states bound by a `let`
//! pattern equal to PyTorch's (the fixture of
//! `scripts/gen_recurrent_fixtures.py`, whose every input and weight is
//! rebuilt here from its formula), initial states from tensors of the
//! graph, and training through a recurrent network.
//!
//! The runtime's recurrent kernel is checked against PyTorch over every
//! combination of options in `runtime/tests/rnn_parity.rs`; this file
//! checks what the macro adds.

mod common;

use std::collections::HashMap;

use common::{fixture, formula, formula_weights, rel_err, tensors};
use netdsl::candle::{Device, Tensor};
use netdsl::network;

network! {
    /// `nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)`: the output.
    pub LstmY(x: [B, 6, 3]) -> [B, 6, 10] { x -> lstm: LSTM(3 -> 5, layers = 2, bidirectional = true) }

    /// The same, its final hidden state.
    pub LstmH(x: [B, 6, 3]) -> [4, B, 5] {
        let (_, (h, _)) = x -> lstm: LSTM(5, num_layers = 2, bidirectional = true);
        h
    }

    /// The same, its final cell state.
    pub LstmC(x: [B, 6, 3]) -> [4, B, 5] {
        let (_, (_, c)) = x -> lstm: LSTM(5, num_layers = 2, bidirectional = true);
        c
    }

    /// `nn.GRU(3, 5, num_layers=2, bidirectional=True)`, time-major.
    pub GruTm(x: [6, B, 3]) -> [6, B, 10] {
        x -> gru: GRU(5, layers = 2, bidirectional = true, batch_first = false)
    }

    /// `nn.GRU`, its final state over any length.
    pub GruH(x: [T, B, 3]) -> [4, B, 5] {
        let (_, h) = x -> gru: GRU(5, layers = 2, bidirectional = true, batch_first = false);
        h
    }

    /// `nn.LSTM(3, 5, proj_size=3)`: y and h are 3 wide.
    pub LstmProj(x: [B, 6, 3]) -> [B, 6, 3] { x -> lstm: LSTM(5, proj_size = 3) }

    /// A ReLU RNN.
    pub RnnRelu(x: [B, 6, 3]) -> [B, 6, 5] { x -> rnn: RNN(5, nonlinearity = relu) }

    /// An encoder's final states start a decoder.
    pub EncDec(x: [B, T, 3]) -> [B, T, 5] {
        let (_, (h, c)) = x -> enc: LSTM(5);
        x -> dec: LSTM(5, init = (h, c))
    }

    /// A classifier on the last step: the usual many-to-one model.
    pub LastStep(x: [B, T, 3]) -> [B, 2] {
        x -> rnn: GRU(8) -> Select(1, -1) -> fc: Linear(2)
    }
}

fn fx() -> &'static HashMap<String, Tensor> {
    static F: std::sync::OnceLock<HashMap<String, Tensor>> = std::sync::OnceLock::new();
    F.get_or_init(|| tensors("recurrent.safetensors"))
}

fn want(case: &str, what: &str) -> Tensor {
    fx().get(&format!("{case}.{what}"))
        .cloned()
        .unwrap_or_else(|| panic!("no {case}.{what}"))
}

fn close(got: &Tensor, want: &Tensor, what: &str) {
    let e = rel_err(got, want);
    assert!(e < 1e-4, "{what}: relative error {e}");
}

#[test]
fn lstm_output_and_final_states_equal_pytorch() {
    let dev = Device::Cpu;
    let x = formula(&[3, 6, 3], "x");
    let case = "lstm_l2_bi_bf_z_eq";
    let y = LstmY::from_tensors(formula_weights(LstmY::MANIFEST), &dev).unwrap();
    close(&y.forward(&x).unwrap(), &want(case, "y"), "y");
    let h = LstmH::from_tensors(formula_weights(LstmH::MANIFEST), &dev).unwrap();
    close(&h.forward(&x).unwrap(), &want(case, "h"), "h");
    let c = LstmC::from_tensors(formula_weights(LstmC::MANIFEST), &dev).unwrap();
    close(&c.forward(&x).unwrap(), &want(case, "c"), "c");
}

#[test]
fn gru_time_major_equals_pytorch() {
    let dev = Device::Cpu;
    let x = formula(&[3, 6, 3], "x")
        .transpose(0, 1)
        .unwrap()
        .contiguous()
        .unwrap();
    let case = "gru_l2_bi_tm_z_eq";
    let y = GruTm::from_tensors(formula_weights(GruTm::MANIFEST), &dev).unwrap();
    close(&y.forward(&x).unwrap(), &want(case, "y"), "y");
    let h = GruH::from_tensors(formula_weights(GruH::MANIFEST), &dev).unwrap();
    close(&h.forward(&x).unwrap(), &want(case, "h"), "h");
}

#[test]
fn projected_lstm_equals_pytorch() {
    let dev = Device::Cpu;
    let x = formula(&[3, 6, 3], "x");
    let p = LstmProj::from_tensors(formula_weights(LstmProj::MANIFEST), &dev).unwrap();
    close(
        &p.forward(&x).unwrap(),
        &want("lstmp3_l1_uni_bf_z_eq", "y"),
        "y",
    );
}

#[test]
fn relu_rnn_equals_pytorch() {
    let dev = Device::Cpu;
    let x = formula(&[3, 6, 3], "x");
    let r = RnnRelu::from_tensors(formula_weights(RnnRelu::MANIFEST), &dev).unwrap();
    close(
        &r.forward(&x).unwrap(),
        &want("rnn_relu_l1_uni_bf_z_eq", "y"),
        "y",
    );
}

#[test]
fn state_dict_names_and_shapes_equal_pytorch() {
    let text = std::fs::read_to_string(fixture("recurrent_keys.json")).unwrap();
    let keys: HashMap<String, Vec<(String, Vec<usize>)>> = serde_json::from_str(&text).unwrap();
    let ours = |m: &[netdsl::ParamSpec], prefix: &str| -> Vec<(String, Vec<usize>)> {
        m.iter()
            .map(|p| {
                (
                    p.name.strip_prefix(prefix).unwrap().to_string(),
                    p.shape.to_vec(),
                )
            })
            .collect()
    };
    assert_eq!(ours(LstmY::MANIFEST, "lstm."), keys["lstm_3_5_l2_bi"]);
    assert_eq!(ours(ManA::MANIFEST, "a."), keys["lstm_4_6_p2"]);
    assert_eq!(ours(ManB::MANIFEST, "b."), keys["gru_3_5_l2_bi_nobias"]);
    assert_eq!(ours(ManC::MANIFEST, "c."), keys["rnn_3_5_relu"]);
}

network! {
    /// State_dicts checked against PyTorch's.
    pub ManA(x: [B, T, 4]) -> [B, T, 2] { x -> a: LSTM(6, proj_size = 2) }
    pub ManB(x: [B, T, 3]) -> [B, T, 10] { x -> b: GRU(5, layers = 2, bidirectional = true, bias = false) }
    pub ManC(x: [B, T, 3]) -> [B, T, 5] { x -> c: RNN(5, nonlinearity = relu) }
}

#[test]
fn initial_states_come_from_the_graph() {
    // The decoder starts from the encoder's final states: the same as
    // running the runtime's kernel twice by hand.
    let dev = Device::Cpu;
    let net = EncDec::new_seeded(3, &dev).unwrap();
    let x = formula(&[2, 5, 3], "x");
    let got = net.forward(&x).unwrap();
    let w: HashMap<&str, Tensor> = net
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.clone()))
        .collect();
    let params = |layer: &str| netdsl::layers::RnnParams {
        weight_ih: vec![w[format!("{layer}.weight_ih_l0").as_str()].clone()],
        weight_hh: vec![w[format!("{layer}.weight_hh_l0").as_str()].clone()],
        bias_ih: vec![w[format!("{layer}.bias_ih_l0").as_str()].clone()],
        bias_hh: vec![w[format!("{layer}.bias_hh_l0").as_str()].clone()],
        weight_hr: vec![],
    };
    let spec = netdsl::RnnSpec {
        cell: netdsl::Cell::Lstm,
        hidden: 5,
        proj: 0,
        layers: 1,
        bidirectional: false,
        batch_first: true,
        dropout: 0.0,
    };
    let rng = netdsl::Generator::seeded(0);
    let enc = netdsl::rnn(
        "enc",
        &x,
        &params("enc"),
        spec,
        Default::default(),
        false,
        &rng,
    )
    .unwrap();
    let c = enc.cell().unwrap();
    let inputs = netdsl::RnnInputs {
        h0: Some(&enc.h),
        c0: Some(&c),
        lengths: None,
    };
    let dec = netdsl::rnn("dec", &x, &params("dec"), spec, inputs, false, &rng).unwrap();
    close(&got, &dec.output, "decoder output");
    // Not the same as starting from zeros.
    let zero = netdsl::rnn(
        "dec",
        &x,
        &params("dec"),
        spec,
        Default::default(),
        false,
        &rng,
    )
    .unwrap();
    assert!(rel_err(&got, &zero.output) > 1e-3);
}

#[test]
fn a_many_to_one_classifier_runs_at_any_length_and_trains() {
    let dev = Device::Cpu;
    let mut net = LastStep::new_seeded(0, &dev).unwrap();
    for t in [1, 4, 9] {
        let y = net.forward(&formula(&[3, t, 3], "x")).unwrap();
        assert_eq!(y.dims(), [3, 2]);
    }
    // Gradients reach every recurrent parameter.
    net.train();
    let y = net.forward(&formula(&[3, 4, 3], "x")).unwrap();
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    for (name, var) in net.named_vars().unwrap() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(norm > 0.0, "{name}: zero gradient");
    }
}

network! {
    /// Wu et al. 2016's GNMT encoder as a reusable block: a bidirectional
    /// bottom layer, a unidirectional one, then unidirectional layers with
    /// residual connections (from the third layer on).
    pub block GnmtEncoder(x: [B, T, F], hidden: usize) -> [B, T, hidden] {
        let y = x -> bottom: LSTM(hidden, bidirectional = true) -> l1: LSTM(hidden);
        let z = y + (y -> residual.0: LSTM(hidden));
        z + (z -> residual.1: LSTM(hidden))
    }

    pub Gnmt(x: [B, 6, 3]) -> [B, 6, 5] { x -> enc: GnmtEncoder(5) }
}

#[test]
fn gnmt_encoder_block_equals_pytorch() {
    let net = Gnmt::from_tensors(formula_weights(Gnmt::MANIFEST), &Device::Cpu).unwrap();
    let names: Vec<&str> = Gnmt::MANIFEST.iter().map(|p| p.name).collect();
    assert!(
        names.contains(&"enc.bottom.weight_hh_l0_reverse"),
        "{names:?}"
    );
    assert!(names.contains(&"enc.residual.1.bias_hh_l0"), "{names:?}");
    let y = net.forward(&formula(&[3, 6, 3], "x")).unwrap();
    close(&y, &want("gnmt", "y"), "gnmt");
}

network! {
    /// Variable lengths and initial states as further inputs of the network.
    pub LstmVar(x: [B, 6, 3], lengths: [B] u32, h0: [4, B, 5], c0: [4, B, 5]) -> [B, 6, 10] {
        x -> lstm: LSTM(5, layers = 2, bidirectional = true, init = (h0, c0), lengths = lengths)
    }

    /// The final state of packed sequences, time-major.
    pub GruVarH(x: [6, B, 3], lens: [B]) -> [1, B, 5] {
        let (_, h) = x -> gru: GRU(5, batch_first = false, lengths = lens);
        h
    }
}

#[test]
fn variable_lengths_and_initial_states_as_inputs_equal_pytorch() {
    let dev = Device::Cpu;
    let x = formula(&[3, 6, 3], "x");
    let lengths = Tensor::new(&[6u32, 2, 4], &dev).unwrap();
    let h0 = formula(&[4, 3, 5], "h0");
    let c0 = formula(&[4, 3, 5], "c0");
    let net = LstmVar::from_tensors(formula_weights(LstmVar::MANIFEST), &dev).unwrap();
    let y = net.forward(&x, &lengths, &h0, &c0).unwrap();
    close(&y, &want("lstm_l2_bi_bf_h0_var", "y"), "y");

    let xt = x.transpose(0, 1).unwrap().contiguous().unwrap();
    let lens = Tensor::new(&[6f32, 2., 4.], &dev).unwrap();
    let net = GruVarH::from_tensors(formula_weights(GruVarH::MANIFEST), &dev).unwrap();
    close(
        &net.forward(&xt, &lens).unwrap(),
        &want("gru_l1_uni_tm_z_var", "h"),
        "h",
    );

    // Inputs that disagree on `B`, or a length past `T`, are errors.
    let e = net
        .forward(&xt, &Tensor::new(&[6f32, 2.], &dev).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("must agree on `B`"), "{e}");
    let e = net
        .forward(&xt, &Tensor::new(&[7f32, 2., 1.], &dev).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("sequence 0 has length 7"), "{e}");
}

network! {
    /// A character model that hands its final states back: several outputs.
    pub CharLm(ids: [B, T] u32, h0: [2, B, 16], c0: [2, B, 16]) -> ([B, T, 11], [2, B, 16], [2, B, 16]) {
        let (y, (h, c)) = ids -> emb: Embedding(11, 8) -> lstm: LSTM(16, layers = 2, init = (h0, c0));
        (y -> fc: Linear(11), h, c)
    }
}

#[test]
fn states_handed_back_continue_the_sequence() {
    // Truncated backpropagation through time runs a long sequence in
    // chunks, each starting from the previous chunk's final states: the
    // outputs equal one run over the whole sequence.
    let dev = Device::Cpu;
    let net = CharLm::new_seeded(5, &dev).unwrap();
    assert_eq!(CharLm::OUTPUT_SHAPE, "([B, T, 11], [2, B, 16], [2, B, 16])");
    let ids: Vec<u32> = (0..2 * 9).map(|i| (i * 7 % 11) as u32).collect();
    let ids = Tensor::from_vec(ids, (2, 9), &dev).unwrap();
    let zeros = Tensor::zeros((2, 2, 16), netdsl::candle::DType::F32, &dev).unwrap();
    let (whole, h9, c9) = net.forward(&ids, &zeros, &zeros).unwrap();
    let (a, h, c) = net
        .forward(&ids.narrow(1, 0, 4).unwrap(), &zeros, &zeros)
        .unwrap();
    let (b, h2, c2) = net.forward(&ids.narrow(1, 4, 5).unwrap(), &h, &c).unwrap();
    let chunks = Tensor::cat(&[&a, &b], 1).unwrap();
    close(&chunks, &whole, "outputs in chunks");
    close(&h2, &h9, "final h");
    close(&c2, &c9, "final c");
}

network! {
    /// The guide's tagger over padded batches: each sentence's own length is an input. over padded batches: each sentence's own length is an input.
    pub Tagger(ids: [B, T] u32, lengths: [B] u32) -> [B, T, 9] {
        ids -> emb: Embedding(1000, 64, padding_idx = 0)
            -> lstm: LSTM(128, layers = 2, bidirectional = true, lengths = lengths)
            -> fc: Linear(9)
    }
    /// An encoder whose final states start a decoder.
    pub Seq2Seq(src: [B, S, 32], tgt: [B, T, 32]) -> [B, T, 64] {
        let (_, (h, c)) = src -> enc: LSTM(64, layers = 2);
        tgt -> dec: LSTM(64, layers = 2, init = (h, c))
    }
}
/// The guide's recurrent examples, as written there.
#[test]
fn the_guides_tagger_and_seq2seq_run() {
    use netdsl::candle::{Device, Tensor};
    let d = Device::Cpu;
    let t = Tagger::new_seeded(0, &d).unwrap();
    let ids = Tensor::zeros((2, 5), netdsl::candle::DType::U32, &d).unwrap();
    let l = Tensor::new(&[5u32, 3], &d).unwrap();
    assert_eq!(t.forward(&ids, &l).unwrap().dims(), [2, 5, 9]);
    let s = Seq2Seq::new_seeded(0, &d).unwrap();
    let a = Tensor::zeros((2, 4, 32), netdsl::candle::DType::F32, &d).unwrap();
    let b = Tensor::zeros((2, 6, 32), netdsl::candle::DType::F32, &d).unwrap();
    assert_eq!(s.forward(&a, &b).unwrap().dims(), [2, 6, 64]);
}

network! {
    /// The README's sequence-to-sequence model, as written there.
    pub ReadmeSeq2Seq(src: [B, S] u32, src_len: [B] u32, tgt: [B, T] u32) -> [B, T, 1000] {
        let (_, (h, c)) = src -> src_emb: Embedding(1000, 64)
            -> enc: LSTM(128, layers = 2, lengths = src_len);
        tgt -> tgt_emb: Embedding(1000, 64)
            -> dec: LSTM(128, layers = 2, init = (h, c)) -> out: Linear(1000)
    }
}

#[test]
fn the_readmes_seq2seq_runs() {
    let dev = Device::Cpu;
    let net = ReadmeSeq2Seq::new_seeded(1, &dev).unwrap();
    let src = Tensor::from_vec((0..14u32).collect::<Vec<_>>(), (2, 7), &dev).unwrap();
    let tgt = Tensor::from_vec((0..10u32).collect::<Vec<_>>(), (2, 5), &dev).unwrap();
    let lens = Tensor::new(&[7u32, 3], &dev).unwrap();
    assert_eq!(net.forward(&src, &lens, &tgt).unwrap().dims(), [2, 5, 1000]);
    // The encoder's padding does not reach the decoder: changing what
    // lies past sequence 1's length changes nothing.
    let mut v: Vec<u32> = (0..14).collect();
    v[7 + 5] = 999;
    let src2 = Tensor::from_vec(v, (2, 7), &dev).unwrap();
    let a = net.forward(&src, &lens, &tgt).unwrap();
    let b = net.forward(&src2, &lens, &tgt).unwrap();
    assert_eq!(rel_err(&a, &b), 0.0);
}

network! {
    /// The order along time reversed (`torch.flip`).
    pub Rev(x: [B, T, 3]) -> [B, T, 3] { x -> Reverse(1) }
    /// Each sequence reversed within its length, the padding in place: the
    /// reversed source of Sutskever et al. over a padded batch.
    pub RevLen(x: [B, T, 3], lens: [B] u32) -> [B, T, 2] {
        x -> Reverse(lengths = lens) -> enc: GRU(2, lengths = lens)
    }
}

#[test]
fn reversing_along_time_whole_and_within_lengths() {
    let dev = Device::Cpu;
    let x = formula(&[2, 4, 3], "x");
    let xv = x.to_vec3::<f32>().unwrap();
    let y = Rev::new_seeded(0, &dev)
        .unwrap()
        .forward(&x)
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    for b in 0..2 {
        for t in 0..4 {
            assert_eq!(y[b][t], xv[b][3 - t]);
        }
    }
    // Within lengths (4, 2): sequence 1 is x1 x0 p p.
    let lens = Tensor::new(&[4u32, 2], &dev).unwrap();
    let r = netdsl::__private::reverse(&x, 1, Some(&lens))
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    assert_eq!(
        r[0],
        vec![
            xv[0][3].clone(),
            xv[0][2].clone(),
            xv[0][1].clone(),
            xv[0][0].clone()
        ]
    );
    assert_eq!(
        r[1],
        vec![
            xv[1][1].clone(),
            xv[1][0].clone(),
            xv[1][2].clone(),
            xv[1][3].clone()
        ]
    );
    // Its gradient is the same permutation.
    let v = netdsl::candle::Var::from_tensor(&x).unwrap();
    let w = formula(&[2, 4, 3], "w");
    let g = netdsl::__private::reverse(v.as_tensor(), 1, Some(&lens))
        .unwrap()
        .mul(&w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gx = g.get(v.as_tensor()).unwrap().to_vec3::<f32>().unwrap();
    let wv = w.to_vec3::<f32>().unwrap();
    assert_eq!(
        gx[1],
        vec![
            wv[1][1].clone(),
            wv[1][0].clone(),
            wv[1][2].clone(),
            wv[1][3].clone()
        ]
    );
    // Through a network with a recurrent layer over the same lengths.
    let net = RevLen::new_seeded(0, &dev).unwrap();
    assert_eq!(net.forward(&x, &lens).unwrap().dims(), [2, 4, 2]);
}

#[test]
fn summary_at_takes_the_further_inputs_sizes() {
    let s = ReadmeSeq2Seq::summary_at(&[("S", 7), ("T", 5)]).unwrap();
    let dec = s.lines().find(|l| l.starts_with("dec")).unwrap();
    assert!(dec.contains("[B, 5, 128]"), "{dec}");
    assert!(!dec.contains('?'), "{dec}");
    let e = ReadmeSeq2Seq::summary_at(&[("T", 5)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`S` has no size"), "{e}");
}

network! {
    /// Wide enough for inference's fused LSTM step on two threads (64
    /// units, batch 16), which packs its weights once.
    pub LstmWide(x: [B, T, 8]) -> [B, T, 64] { x -> lstm: LSTM(64) }
}

#[test]
fn packed_lstm_weights_follow_replaced_tensors() {
    assert!(
        LstmWide::FUSIONS.contains("`lstm`: weights packed once for the fused LSTM step"),
        "{}",
        LstmWide::FUSIONS
    );
    let dev = Device::Cpu;
    let mut net = LstmWide::new_seeded(0, &dev).unwrap();
    let other = LstmWide::new_seeded(1, &dev).unwrap();
    let x = Tensor::rand(-1f32, 1.0, (16, 3, 8), &dev).unwrap();
    let first = net.forward(&x).unwrap();
    close(&net.forward(&x).unwrap(), &first, "from the kept packing");
    net.lstm.weight_ih = other.lstm.weight_ih.clone();
    net.lstm.weight_hh = other.lstm.weight_hh.clone();
    net.lstm.bias_ih = other.lstm.bias_ih.clone();
    net.lstm.bias_hh = other.lstm.bias_hh.clone();
    let replaced = net.forward(&x).unwrap();
    close(
        &replaced,
        &other.forward(&x).unwrap(),
        "after replacing the weights",
    );
    assert!(
        rel_err(&replaced, &first) > 1e-2,
        "the replaced weights were not used"
    );
    net.set_fusion(false);
    close(&net.forward(&x).unwrap(), &replaced, "fusion off");
}
