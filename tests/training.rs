//! Training end to end: a network with batch norm and dropout learns the
//! digits, modes behave as PyTorch's, and a checkpointed run resumed from
//! disk reproduces the uninterrupted run bit for bit on the CPU.

use std::collections::BTreeMap;
use std::path::PathBuf;

use netdsl::candle::Device;
use netdsl::data::{shuffle, Digits};
use netdsl::network;
use netdsl::train::{cross_entropy, AdamW, AdamWConfig, Optimizer};

mod common;

network! {
    /// Small enough to train in a test: batch norm (running statistics) and
    /// dropout (the seeded generator) make resuming non-trivial.
    Tiny(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv: Conv2d(4, kernel = 5, stride = 2, bias = false) -> bn: BatchNorm2d -> relu -> max_pool(2)
          -> flatten -> Dropout(0.25) -> fc: Linear(10)
    }
}

fn digits() -> Digits {
    Digits::load(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/digits.bin")).unwrap()
}

/// Trains `steps` steps from where `net`, `opt` and `rng` are.
fn run(
    net: &mut Tiny,
    opt: &mut AdamW,
    data: &Digits,
    order: &mut [usize],
    rng: &mut netdsl::Rng,
    steps: std::ops::Range<usize>,
) -> f32 {
    let mut last = 0.0;
    for step in steps {
        if step % 20 == 0 {
            shuffle(order, rng);
        }
        let chunk = &order[(step % 20) * 32..(step % 20) * 32 + 32];
        let (x, y) = data.batch(chunk, 3, 28, &Device::Cpu).unwrap();
        let loss = cross_entropy(&net.forward(&x).unwrap(), &y, 0.0).unwrap();
        opt.backward_step(&loss).unwrap();
        last = loss.to_scalar().unwrap();
    }
    last
}

fn bits(net: &Tiny) -> Vec<(String, Vec<u8>)> {
    net.named_tensors()
        .into_iter()
        .map(|(n, t)| {
            let t = t
                .flatten_all()
                .unwrap()
                .to_dtype(netdsl::candle::DType::F64)
                .unwrap();
            let v: Vec<f64> = t.to_vec1().unwrap();
            (
                n.to_string(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect()
}

#[test]
fn resumed_run_equals_uninterrupted_run_bit_for_bit() {
    let data = digits();
    let order0: Vec<usize> = (0..640).collect();

    // Uninterrupted: 30 steps.
    let mut net = Tiny::new_seeded(5, &Device::Cpu).unwrap();
    net.train();
    let mut opt = AdamW::new(net.vars().unwrap(), AdamWConfig::default()).unwrap();
    let (mut order, mut rng) = (order0.clone(), netdsl::Rng::stream(5, "shuffle"));
    run(&mut net, &mut opt, &data, &mut order, &mut rng, 0..30);
    let uninterrupted = bits(&net);

    // Interrupted after 12 steps: checkpoint, drop everything, resume.
    let mut net = Tiny::new_seeded(5, &Device::Cpu).unwrap();
    net.train();
    let mut opt = AdamW::new(net.vars().unwrap(), AdamWConfig::default()).unwrap();
    let (mut order, mut rng) = (order0.clone(), netdsl::Rng::stream(5, "shuffle"));
    run(&mut net, &mut opt, &data, &mut order, &mut rng, 0..12);
    let path = std::env::temp_dir().join(format!("netdsl-ckpt-{}.safetensors", std::process::id()));
    let meta = BTreeMap::from([("step".to_string(), "12".to_string())]);
    netdsl::save_checkpoint(
        &path,
        &net.named_tensors(),
        &opt.state(),
        net.rng_state(),
        &meta,
    )
    .unwrap();
    let (order_saved, rng_saved) = (order.clone(), rng.state());
    drop((net, opt));

    let ckpt = netdsl::load_checkpoint(&path, &Device::Cpu).unwrap();
    assert_eq!(ckpt.meta["step"], "12");
    let mut net = Tiny::from_tensors(ckpt.model, &Device::Cpu).unwrap();
    net.set_rng_state(&ckpt.rng);
    net.train();
    let mut opt = AdamW::new(net.vars().unwrap(), AdamWConfig::default()).unwrap();
    opt.load_state(&ckpt.optimizer.into_iter().collect())
        .unwrap();
    let (mut order, mut rng) = (order_saved, netdsl::Rng::from_state(&rng_saved));
    run(&mut net, &mut opt, &data, &mut order, &mut rng, 12..30);
    assert!(
        bits(&net) == uninterrupted,
        "the resumed run must equal the uninterrupted one bit for bit"
    );
}

#[test]
fn modes_and_learning() {
    let data = digits();
    let mut net = Tiny::new_seeded(1, &Device::Cpu).unwrap();
    // 16 rows: `fc` packs its weight into the fusion cache (inference,
    // above 4 rows); training must not leave that copy stale (below).
    let (x16, _) = data
        .batch(&(0..16).collect::<Vec<_>>(), 3, 28, &Device::Cpu)
        .unwrap();
    let before = net.forward(&x16).unwrap();
    let (x, _) = data.batch(&[0, 1, 2, 3], 3, 28, &Device::Cpu).unwrap();
    // Inference is deterministic and leaves the running statistics alone.
    let a = net.forward(&x).unwrap();
    let b = net.forward(&x).unwrap();
    assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
    assert_eq!(net.bn.num_batches_tracked.to_scalar::<i64>().unwrap(), 0);
    // Training: dropout differs between calls, batch norm counts batches.
    net.train();
    assert!(net.is_training());
    let c = net.forward(&x).unwrap();
    let d = net.forward(&x).unwrap();
    assert_ne!(c.to_vec2::<f32>().unwrap(), d.to_vec2::<f32>().unwrap());
    assert_eq!(net.bn.num_batches_tracked.to_scalar::<i64>().unwrap(), 2);
    let mean: Vec<f32> = net.bn.running_mean.to_vec1().unwrap();
    assert!(mean.iter().any(|m| *m != 0.0), "running mean updated");

    // A few hundred steps learn the digits well beyond chance.
    let mut opt = AdamW::new(
        net.vars().unwrap(),
        AdamWConfig {
            lr: 3e-3,
            ..Default::default()
        },
    )
    .unwrap();
    let (mut order, mut rng) = (
        (0..640).collect::<Vec<_>>(),
        netdsl::Rng::stream(1, "shuffle"),
    );
    let first = run(&mut net, &mut opt, &data, &mut order, &mut rng, 0..1);
    let last = run(&mut net, &mut opt, &data, &mut order, &mut rng, 1..200);
    assert!(last < first * 0.5, "loss {first} -> {last}");
    net.eval();
    let held_out: Vec<usize> = (1400..1797).collect();
    let (x, y) = data.batch(&held_out, 3, 28, &Device::Cpu).unwrap();
    let hits: f32 = net
        .forward(&x)
        .unwrap()
        .argmax(1)
        .unwrap()
        .eq(&y)
        .unwrap()
        .to_dtype(netdsl::candle::DType::F32)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let acc = hits / held_out.len() as f32;
    assert!(acc > 0.85, "held-out accuracy {acc}");
    // The trained weights, not the cached packed copy of the untrained
    // ones: fusion on (the cache, refilled after `eval`) equals fusion off.
    let fused = net.forward(&x16).unwrap();
    net.set_fusion(false);
    let plain = net.forward(&x16).unwrap();
    let d = common::max_abs_diff;
    assert!(d(&fused, &plain) < 1e-4, "fused {}", d(&fused, &plain));
    assert!(d(&fused, &before) > 1e-2, "training changed nothing?");
}

network! {
    /// Per-layer initialisation schemes.
    Inits(x: [B, 100]) -> [B, 300] {
        x -> a: Linear(200, init = kaiming_normal) -> b: Linear(300, init = xavier_uniform, bias = false)
    }
}

#[test]
fn per_layer_init_schemes() {
    let net = Inits::new_seeded(0, &Device::Cpu).unwrap();
    let std = |t: &netdsl::candle::Tensor| {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt()
    };
    // kaiming_normal, fan_in 100: std sqrt(2/100); xavier_uniform 200 + 300: bound sqrt(6/500)
    assert!(
        (std(&net.a.weight) - 0.1414).abs() < 0.005,
        "{}",
        std(&net.a.weight)
    );
    let bound = (6.0f32 / 500.0).sqrt();
    let max: f32 = net
        .b
        .weight
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(max <= bound && max > bound * 0.98, "{max} vs {bound}");
    assert!((std(&net.b.weight) - bound / 3f32.sqrt()).abs() < 0.003);
}

#[test]
fn a_step_on_a_loss_from_eval_mode_is_an_error_that_says_train() {
    let data = digits();
    let mut net = Tiny::new_seeded(1, &Device::Cpu).unwrap();
    let mut opt = AdamW::new(net.vars().unwrap(), AdamWConfig::default()).unwrap();
    let (x, y) = data.batch(&[0, 1, 2, 3], 3, 28, &Device::Cpu).unwrap();
    // A network starts in eval mode: its parameters are used detached.
    let loss = cross_entropy(&net.forward(&x).unwrap(), &y, 0.0).unwrap();
    let before = bits(&net);
    let e = opt.backward_step(&loss).unwrap_err();
    assert!(matches!(e, netdsl::Error::NoGradient { vars: 5 }), "{e:?}");
    assert!(e.to_string().contains("call `train()`"), "{e}");
    assert_eq!(bits(&net), before, "a refused step changes nothing");
    // In training mode the same step goes through.
    net.train();
    let loss = cross_entropy(&net.forward(&x).unwrap(), &y, 0.0).unwrap();
    opt.backward_step(&loss).unwrap();
    assert_ne!(bits(&net), before);
}
