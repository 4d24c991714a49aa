//! Parity with PyTorch of `netdsl_runtime::train`: losses (values and
//! gradients), optimiser trajectories, learning-rate schedules; plus the
//! optimisers' state round trip (bit-exact resume on the CPU) and the typed
//! errors.
//!
//! The fixture `tests/fixtures/train.safetensors` (repo root) comes from
//! `scripts/gen_train_fixtures.py`; `LOSSES`, `optims()` and `SCHEDULES`
//! below mirror the script's `LOSSES`, `OPTIMS` and `SCHEDULES`.

use std::collections::HashMap;
use std::sync::OnceLock;

use netdsl_runtime::candle::{DType, Device, Tensor, Var};
use netdsl_runtime::train::{
    bce_with_logits, cross_entropy, l1_loss, mse_loss, nll_loss, Adam, AdamConfig, AdamW,
    AdamWConfig, CosineAnnealingLr, LrSchedule, Optimizer, Sgd, SgdConfig, StepLr,
};
use netdsl_runtime::{Error, Result};

mod common;

/// Relative tolerance, against the largest magnitude of the reference tensor.
const REL: f32 = 1e-5;
const STEPS: usize = 5;
const EPOCHS: usize = 10;
const BASE_LR: f64 = 0.1;

fn fixtures() -> &'static HashMap<String, Tensor> {
    static F: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    F.get_or_init(|| common::load_fixture("train.safetensors"))
}

fn fixture(name: &str, dev: &Device) -> Tensor {
    common::on(fixtures(), name, dev)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// Asserts shapes agree, every value is finite, and
/// `|got - want| <= REL * max|want|` elementwise.
fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (g, w) = (values(got), values(want));
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(a.is_finite(), "{what}[{i}]: non-finite value {a}");
        assert!(
            (a - b).abs() <= REL * scale,
            "{what}[{i}]: got {a}, PyTorch {b} (tolerance {})",
            REL * scale
        );
    }
}

fn is_typed_error(r: Result<Tensor>) -> String {
    match r {
        Err(e @ Error::Candle(_)) => e.to_string(),
        Err(e) => panic!("unexpected error variant: {e}"),
        Ok(t) => panic!("expected an error, got {t}"),
    }
}

// ---------------------------------------------------------------------------
// Losses
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Loss {
    CrossEntropy(f64),
    Nll,
    Mse,
    L1,
    Bce,
}

/// Mirrors `LOSSES` in scripts/gen_train_fixtures.py.
const LOSSES: &[(&str, Loss)] = &[
    ("ce", Loss::CrossEntropy(0.0)),
    ("ce_ls", Loss::CrossEntropy(0.1)),
    ("ce_big", Loss::CrossEntropy(0.0)),
    ("ce_big_ls", Loss::CrossEntropy(0.1)),
    ("nll", Loss::Nll),
    ("mse", Loss::Mse),
    ("l1", Loss::L1),
    ("bce", Loss::Bce),
];

impl Loss {
    fn float_targets(self) -> bool {
        matches!(self, Loss::Mse | Loss::L1 | Loss::Bce)
    }

    fn run(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        match self {
            Loss::CrossEntropy(ls) => cross_entropy(a, b, ls),
            Loss::Nll => nll_loss(a, b),
            Loss::Mse => mse_loss(a, b),
            Loss::L1 => l1_loss(a, b),
            Loss::Bce => bce_with_logits(a, b),
        }
    }
}

#[test]
fn fixture_holds_exactly_the_losses() {
    let mut in_file: Vec<&str> = fixtures()
        .keys()
        .filter_map(|k| k.strip_suffix(".grad_a"))
        .collect();
    in_file.sort_unstable();
    let mut here: Vec<&str> = LOSSES.iter().map(|(n, _)| *n).collect();
    here.sort_unstable();
    assert_eq!(in_file, here);
}

#[test]
fn losses_and_their_gradients_match_pytorch() {
    for dev in common::devices() {
        for &(name, loss) in LOSSES {
            let what = format!("{name} on {dev:?}");
            let a = Var::from_tensor(&fixture(&format!("{name}.a"), &dev)).unwrap();
            let b_fix = fixture(&format!("{name}.b"), &dev);
            let b = Var::from_tensor(&b_fix).unwrap();
            let b_in = if loss.float_targets() {
                b.as_tensor().clone()
            } else {
                b_fix.clone()
            };
            let out = loss.run(a.as_tensor(), &b_in).unwrap();
            assert_eq!(out.dims(), &[] as &[usize], "{what}: loss must be a scalar");
            assert_close(
                &format!("{what}: loss"),
                &out,
                &fixture(&format!("{name}.loss"), &dev),
            );
            let grads = out.backward().unwrap();
            let grad_a = grads.get(a.as_tensor()).expect("gradient w.r.t. a");
            assert_close(
                &format!("{what}: d loss / d a"),
                grad_a,
                &fixture(&format!("{name}.grad_a"), &dev),
            );
            if loss.float_targets() {
                let grad_b = grads.get(b.as_tensor()).expect("gradient w.r.t. b");
                assert_close(
                    &format!("{what}: d loss / d b"),
                    grad_b,
                    &fixture(&format!("{name}.grad_b"), &dev),
                );
            } else {
                // Every integer dtype of class indices gives the same loss.
                for dtype in [DType::U8, DType::U32, DType::I32] {
                    let again = loss.run(a.as_tensor(), &b_fix.to_dtype(dtype).unwrap());
                    assert_close(&format!("{what}: {dtype:?} targets"), &again.unwrap(), &out);
                }
            }
        }
    }
}

#[test]
fn saturated_bce_is_finite_and_exact_at_the_extremes() {
    // x = ±100 with a matching target: loss ~0 and gradient 0 (to f32), not
    // the inf/nan of log(sigmoid(x)).
    let x = Var::new(&[100f32, -100.0, 50.0, -50.0], &Device::Cpu).unwrap();
    let t = Tensor::new(&[1f32, 0.0, 1.0, 0.0], &Device::Cpu).unwrap();
    let loss = bce_with_logits(x.as_tensor(), &t).unwrap();
    assert_eq!(loss.to_scalar::<f32>().unwrap(), 0.0);
    let g = values(loss.backward().unwrap().get(x.as_tensor()).unwrap());
    assert!(g.iter().all(|v| v.is_finite() && v.abs() < 1e-20), "{g:?}");
    // And wrong by 100: loss 100, gradient ±1/n.
    let t = Tensor::new(&[0f32, 1.0, 0.0, 1.0], &Device::Cpu).unwrap();
    let loss = bce_with_logits(x.as_tensor(), &t).unwrap();
    assert_eq!(loss.to_scalar::<f32>().unwrap(), 75.0);
    let g = values(loss.backward().unwrap().get(x.as_tensor()).unwrap());
    assert_eq!(g, [0.25, -0.25, 0.25, -0.25]);
}

#[test]
fn bad_loss_inputs_are_typed_errors() {
    let dev = Device::Cpu;
    let logits = Tensor::zeros((3, 5), DType::F32, &dev).unwrap();
    let out_of_range = [
        Tensor::new(&[0u32, 5, 1], &dev).unwrap(),
        Tensor::new(&[0i64, -1, 1], &dev).unwrap(),
        Tensor::new(&[-100i64, 0, 1], &dev).unwrap(),
        Tensor::new(&[0u8, 1, 200], &dev).unwrap(),
    ];
    for t in &out_of_range {
        let e = is_typed_error(cross_entropy(&logits, t, 0.0));
        assert!(e.contains("out of range for 5 classes"), "{e}");
        let e = is_typed_error(nll_loss(&logits, t));
        assert!(e.contains("out of range"), "{e}");
    }
    let wrong_len = Tensor::new(&[0u32, 1], &dev).unwrap();
    is_typed_error(cross_entropy(&logits, &wrong_len, 0.0));
    let float_targets = Tensor::zeros(3, DType::F32, &dev).unwrap();
    is_typed_error(cross_entropy(&logits, &float_targets, 0.0));
    let ok = Tensor::new(&[0u32, 4, 1], &dev).unwrap();
    is_typed_error(cross_entropy(&logits, &ok, 1.5));
    is_typed_error(cross_entropy(&logits, &ok, -0.1));
    is_typed_error(cross_entropy(&logits.flatten_all().unwrap(), &ok, 0.0));
    is_typed_error(cross_entropy(
        &logits.to_dtype(DType::I64).unwrap(),
        &ok,
        0.0,
    ));
    let a = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    let b = Tensor::zeros((3, 2), DType::F32, &dev).unwrap();
    let ints = Tensor::zeros((2, 3), DType::I64, &dev).unwrap();
    for f in [mse_loss, l1_loss, bce_with_logits] {
        is_typed_error(f(&a, &b));
        is_typed_error(f(&ints, &ints));
        is_typed_error(f(&a, &a.to_dtype(DType::F64).unwrap()));
    }
}

// ---------------------------------------------------------------------------
// Optimisers
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Opt {
    Sgd(SgdConfig),
    Adam(AdamConfig),
    AdamW(AdamWConfig),
}

impl Opt {
    fn build(self, vars: Vec<Var>) -> Box<dyn Optimizer> {
        match self {
            Opt::Sgd(c) => Box::new(Sgd::new(vars, c).unwrap()),
            Opt::Adam(c) => Box::new(Adam::new(vars, c).unwrap()),
            Opt::AdamW(c) => Box::new(AdamW::new(vars, c).unwrap()),
        }
    }
}

/// Mirrors `OPTIMS` in scripts/gen_train_fixtures.py: name, optimiser, and
/// an optional per-step cosine schedule.
fn optims() -> Vec<(&'static str, Opt, Option<CosineAnnealingLr>)> {
    vec![
        (
            "sgd_plain",
            Opt::Sgd(SgdConfig {
                lr: 0.1,
                ..Default::default()
            }),
            None,
        ),
        (
            "sgd_nesterov",
            Opt::Sgd(SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.01,
                ..Default::default()
            }),
            None,
        ),
        (
            "sgd_dampening",
            Opt::Sgd(SgdConfig {
                lr: 0.05,
                momentum: 0.8,
                dampening: 0.3,
                weight_decay: 0.001,
                ..Default::default()
            }),
            None,
        ),
        (
            "adam",
            Opt::Adam(AdamConfig {
                lr: 0.01,
                ..Default::default()
            }),
            None,
        ),
        (
            "adam_l2",
            Opt::Adam(AdamConfig {
                lr: 0.02,
                betas: (0.8, 0.99),
                eps: 1e-6,
                weight_decay: 0.1,
            }),
            None,
        ),
        (
            "adamw",
            Opt::AdamW(AdamWConfig {
                lr: 0.01,
                ..Default::default()
            }),
            None,
        ),
        (
            "adamw_cosine",
            Opt::AdamW(AdamWConfig {
                lr: 0.05,
                weight_decay: 0.1,
                ..Default::default()
            }),
            Some(CosineAnnealingLr::new(4, 0.001).unwrap()),
        ),
    ]
}

/// The problem's parameters `[w, bias, unused]` as fresh variables.
fn problem_vars(dev: &Device) -> Vec<Var> {
    ["w", "bias", "unused"]
        .iter()
        .map(|n| Var::from_tensor(&fixture(&format!("problem.{n}"), dev)).unwrap())
        .collect()
}

/// `F.mse_loss(x @ w.T + bias, y)`; `unused` is not part of it.
fn problem_loss(vars: &[Var]) -> Tensor {
    let dev = vars[0].device();
    let x = fixture("problem.x", dev);
    let y = fixture("problem.y", dev);
    let pred = x
        .matmul(&vars[0].as_tensor().t().unwrap())
        .unwrap()
        .broadcast_add(vars[1].as_tensor())
        .unwrap();
    mse_loss(&pred, &y).unwrap()
}

#[test]
fn optimiser_trajectories_match_pytorch() {
    for dev in common::devices() {
        for (name, opt, schedule) in optims() {
            let vars = problem_vars(&dev);
            let mut o = opt.build(vars.clone());
            let base_lr = o.lr();
            for k in 1..=STEPS {
                o.backward_step(&problem_loss(&vars)).unwrap();
                if let Some(s) = schedule {
                    o.set_lr(s.lr_at(base_lr, k));
                }
                for (var, p) in vars.iter().zip(["w", "bias", "unused"]) {
                    assert_close(
                        &format!("{name} on {dev:?}: {p} after step {k}"),
                        var.as_tensor(),
                        &fixture(&format!("{name}.{p}.{k}"), &dev),
                    );
                }
            }
            // `unused` never had a gradient: untouched, and no state for it.
            assert_eq!(
                values(vars[2].as_tensor()),
                values(&fixture("problem.unused", &dev))
            );
            let state = o.state();
            assert!(state.iter().all(|(k, _)| !k.starts_with("2.")), "{name}");
            let step = state.iter().find(|(k, _)| k == "step").unwrap();
            assert_eq!(step.1.to_scalar::<i64>().unwrap(), STEPS as i64);
        }
    }
}

#[test]
fn defaults_are_pytorchs() {
    assert_eq!(
        SgdConfig::default(),
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0
        }
    );
    assert_eq!(
        AdamConfig::default(),
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0
        }
    );
    assert_eq!(
        AdamWConfig::default(),
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2
        }
    );
}

#[test]
fn bad_hyper_parameters_are_errors() {
    let vars = || problem_vars(&Device::Cpu);
    let sgd = |c: SgdConfig| Sgd::new(vars(), c).is_err();
    assert!(sgd(SgdConfig {
        nesterov: true,
        ..Default::default()
    }));
    assert!(sgd(SgdConfig {
        nesterov: true,
        momentum: 0.9,
        dampening: 0.1,
        ..Default::default()
    }));
    assert!(sgd(SgdConfig {
        lr: -1.0,
        ..Default::default()
    }));
    assert!(sgd(SgdConfig {
        momentum: -0.5,
        ..Default::default()
    }));
    let adam = |c: AdamConfig| Adam::new(vars(), c).is_err();
    assert!(adam(AdamConfig {
        betas: (1.0, 0.999),
        ..Default::default()
    }));
    assert!(adam(AdamConfig {
        betas: (0.9, -0.1),
        ..Default::default()
    }));
    assert!(adam(AdamConfig {
        eps: -1e-8,
        ..Default::default()
    }));
    assert!(AdamW::new(
        vars(),
        AdamWConfig {
            weight_decay: f64::NAN,
            ..Default::default()
        }
    )
    .is_err());
    // A variable listed twice, an integer variable.
    let v = vars();
    assert!(Sgd::new(vec![v[0].clone(), v[0].clone()], SgdConfig::default()).is_err());
    let ints = Var::from_tensor(&Tensor::new(&[1i64, 2], &Device::Cpu).unwrap()).unwrap();
    assert!(Adam::new(vec![ints], AdamConfig::default()).is_err());
}

// ---------------------------------------------------------------------------
// State round trip
// ---------------------------------------------------------------------------

fn bits(vars: &[Var]) -> Vec<Vec<u32>> {
    vars.iter()
        .map(|v| values(v.as_tensor()).iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// Steps `from..to` of a run, with the learning rate changed at step 2 (so
/// the resumed run must restore it).
fn run_steps(o: &mut dyn Optimizer, vars: &[Var], from: usize, to: usize) {
    for k in from..to {
        if k == 2 {
            o.set_lr(o.lr() * 0.37);
        }
        o.backward_step(&problem_loss(vars)).unwrap();
    }
}

#[test]
fn state_round_trip_resumes_bit_for_bit() {
    let dir = std::env::temp_dir().join(format!("netdsl-train-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, opt, _) in optims() {
        // The uninterrupted run: 7 steps.
        let straight = problem_vars(&Device::Cpu);
        let mut o = opt.build(straight.clone());
        run_steps(o.as_mut(), &straight, 0, 7);

        // Interrupted after 3 steps: parameters and state through a
        // safetensors file, into new variables and a new optimiser.
        let first = problem_vars(&Device::Cpu);
        let mut o1 = opt.build(first.clone());
        run_steps(o1.as_mut(), &first, 0, 3);
        let path = dir.join(format!("{name}.safetensors"));
        let mut saved: HashMap<String, Tensor> = o1.state().into_iter().collect();
        for (i, v) in first.iter().enumerate() {
            saved.insert(format!("param.{i}"), v.as_tensor().clone());
        }
        netdsl_runtime::candle::safetensors::save(&saved, &path).unwrap();
        let mut loaded = netdsl_runtime::candle::safetensors::load(&path, &Device::Cpu).unwrap();
        let resumed: Vec<Var> = (0..first.len())
            .map(|i| Var::from_tensor(&loaded.remove(&format!("param.{i}")).unwrap()).unwrap())
            .collect();
        let mut o2 = opt.build(resumed.clone());
        o2.load_state(&loaded).unwrap();
        assert_eq!(o2.lr(), o1.lr(), "{name}: lr restored");
        run_steps(o2.as_mut(), &resumed, 3, 7);

        assert_eq!(
            bits(&resumed),
            bits(&straight),
            "{name}: resumed run differs"
        );
        // And the states agree too.
        let (s1, s2) = (o.state(), o2.state());
        assert_eq!(s1.len(), s2.len(), "{name}");
        for ((k1, t1), (k2, t2)) in s1.iter().zip(&s2) {
            assert_eq!(k1, k2, "{name}");
            let f = |t: &Tensor| {
                let t = t.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
                t.to_vec1::<f64>().unwrap()
            };
            assert_eq!(f(t1), f(t2), "{name}: state `{k1}`");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_state_is_an_error_and_changes_nothing() {
    let vars = problem_vars(&Device::Cpu);
    let mut adam = Adam::new(vars.clone(), AdamConfig::default()).unwrap();
    adam.backward_step(&problem_loss(&vars)).unwrap();
    let good: HashMap<String, Tensor> = adam.state().into_iter().collect();
    assert!(good.contains_key("0.exp_avg") && good.contains_key("1.step"));

    let mut sgd = Sgd::new(
        vars.clone(),
        SgdConfig {
            lr: 0.5,
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    // Adam's state is not SGD's.
    assert!(sgd.load_state(&good).is_err());
    assert_eq!(sgd.lr(), 0.5);

    let mut other = Adam::new(
        vars.clone(),
        AdamConfig {
            lr: 0.25,
            ..Default::default()
        },
    )
    .unwrap();
    let mut wrong_shape = good.clone();
    wrong_shape.insert(
        "0.exp_avg".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(other.load_state(&wrong_shape).is_err());
    let mut incomplete = good.clone();
    incomplete.remove("1.exp_avg_sq");
    assert!(other.load_state(&incomplete).is_err());
    let mut no_step = good.clone();
    no_step.remove("step");
    assert!(other.load_state(&no_step).is_err());
    let mut out_of_list = good.clone();
    out_of_list.insert("7.exp_avg".into(), good["0.exp_avg"].clone());
    assert!(other.load_state(&out_of_list).is_err());
    // None of the failures changed anything.
    assert_eq!(other.lr(), 0.25);
    assert_eq!(other.state().len(), 2);
    other.load_state(&good).unwrap();
    assert_eq!(other.lr(), 1e-3);
    assert_eq!(other.state().len(), good.len());
}

// ---------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------

/// Mirrors `SCHEDULES` in scripts/gen_train_fixtures.py.
fn schedules() -> Vec<(&'static str, Box<dyn LrSchedule>)> {
    vec![
        ("step_3_0.5", Box::new(StepLr::new(3, 0.5).unwrap())),
        ("step_1_0.9", Box::new(StepLr::new(1, 0.9).unwrap())),
        (
            "cosine_10_0.001",
            Box::new(CosineAnnealingLr::new(10, 0.001).unwrap()),
        ),
        (
            "cosine_4_0",
            Box::new(CosineAnnealingLr::new(4, 0.0).unwrap()),
        ),
        (
            "cosine_3_0.01",
            Box::new(CosineAnnealingLr::new(3, 0.01).unwrap()),
        ),
    ]
}

#[test]
fn schedules_match_pytorchs_schedulers() {
    let in_file = fixtures().keys().filter(|k| k.ends_with(".lr")).count();
    assert_eq!(in_file, schedules().len());
    for (name, s) in schedules() {
        let want = fixture(&format!("{name}.lr"), &Device::Cpu)
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(want.len(), EPOCHS);
        for (epoch, w) in want.iter().enumerate() {
            let got = s.lr_at(BASE_LR, epoch);
            assert!(
                (got - w).abs() <= 1e-12 + 1e-9 * w.abs(),
                "{name} epoch {epoch}: got {got}, PyTorch {w}"
            );
        }
    }
    assert!(StepLr::new(0, 0.1).is_err());
    assert!(CosineAnnealingLr::new(0, 0.0).is_err());
}
