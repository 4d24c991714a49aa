//! Property test from the grammar: random `network!` specs (networks,
//! blocks with parameters, nested blocks, `repeat`, `if`, `seq`, `let` of
//! tensors and of values, merges, splits and crops, every op family with
//! its arguments, symbolic and concrete sizes), mostly valid, with
//! deliberate mistakes mixed in; and token-level mutation of every
//! `network!` invocation in the repository's tests and examples. The
//! compiler must never panic, and every error must point inside the input.
//! Seeded: a failure prints the spec, and reproduces.
//!
//! CI runs 1,500 specs and 6 mutations per invocation. A longer local
//! search: `GRAMMAR_FUZZ_N=6000 GRAMMAR_FUZZ_SEED=1 GRAMMAR_FUZZ_ROUNDS=1000
//! cargo test --release -p netdsl-compiler --test grammar_fuzz` (on
//! 2026-12-05: 18,000 specs over seeds 1-3 and about 300,000 mutations, no
//! panic).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::TokenStream;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod support;
use support::{check, invocations, pieces};

/// The shape the generator believes a tensor has (it keeps most layers
/// valid; the compiler is the judge).
#[derive(Clone)]
enum Sh {
    /// [B, C, H, W], `None` for a symbolic size.
    Image(u64, Option<u64>, Option<u64>),
    /// [B, T, F] (T symbolic or known).
    Seq(u64),
    /// [B, F]
    Flat(u64),
    /// [B, T] u32 token ids.
    Ids,
}

struct Gen {
    rng: ChaCha8Rng,
    /// Probability of a deliberate mistake per choice.
    mistake: f64,
    names: usize,
}

impl Gen {
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.rng.random_range(0..xs.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn oops(&mut self) -> bool {
        let p = self.mistake;
        self.chance(p)
    }

    fn name(&mut self, base: &str) -> String {
        self.names += 1;
        format!("{base}{}", self.names)
    }

    /// A number, or now and then a wrong one.
    fn num(&mut self, good: u64) -> String {
        if self.oops() {
            self.pick(&[
                "0",
                "-1",
                "2.5",
                "true",
                "same",
                "nowhere",
                "(1, 2, 3)",
                "1 -> 2",
            ])
            .to_string()
        } else {
            good.to_string()
        }
    }

    /// An op name, or now and then a misspelt or foreign one.
    fn op(&mut self, good: &str) -> String {
        if self.oops() {
            self.pick(&[
                "Conv3x3",
                "Dense",
                "Relu",
                "MaxPool",
                "Conv2D",
                "BatchNorm",
                "Nope",
            ])
            .to_string()
        } else {
            good.to_string()
        }
    }

    /// An extra argument now and then: unknown, duplicated or positional.
    fn extra(&mut self) -> String {
        if self.oops() {
            self.pick(&[
                ", strides = 2",
                ", kernel = 3",
                ", 7",
                ", bias = 1",
                ", p = 1.5",
                ", dim = 9",
            ])
            .to_string()
        } else {
            String::new()
        }
    }

    /// One layer applied to `sh`: its text and the shape after it.
    fn layer(&mut self, sh: &Sh, blocks: &[BlockSig], depth: usize) -> (String, Sh) {
        match sh.clone() {
            Sh::Image(c, h, w) => {
                let smallest = h.unwrap_or(64).min(w.unwrap_or(64));
                match self.rng.random_range(0..14) {
                    0..=3 => {
                        let out = *self.pick(&[4u64, 8, 16]);
                        let k = *self.pick(&[1u64, 3, 5]);
                        let s = if smallest >= 8 {
                            *self.pick(&[1u64, 1, 2])
                        } else {
                            1
                        };
                        let pad = if self.chance(0.3) && s == 1 {
                            "same".to_string()
                        } else {
                            self.num(k / 2)
                        };
                        let input = if self.chance(0.3) {
                            let written = if self.oops() { c + 1 } else { c };
                            format!("{written} -> ")
                        } else {
                            String::new()
                        };
                        let name = self.name("conv");
                        let op = self.op("Conv2d");
                        let k_text = self.num(k);
                        let extra = self.extra();
                        let size =
                            |n: Option<u64>| n.map(|n| (n + 2 * (k / 2)).saturating_sub(k) / s + 1);
                        (
                            format!(
                                "{name}: {op}({input}{out}, kernel = {k_text}, stride = {s}, padding = {pad}{extra})"
                            ),
                            Sh::Image(out, size(h), size(w)),
                        )
                    }
                    4 if smallest >= 4 => {
                        let op = self
                            .pick(&["max_pool", "avg_pool", "MaxPool2d", "AvgPool2d"])
                            .to_string();
                        let k = self.num(2);
                        let extra = self.extra();
                        (
                            format!("{op}({k}{extra})"),
                            Sh::Image(c, h.map(|h| h / 2), w.map(|w| w / 2)),
                        )
                    }
                    5 => {
                        let written = if self.oops() { c * 2 } else { c };
                        let name = self.name("bn");
                        if self.chance(0.5) {
                            (format!("{name}: BatchNorm2d({written})"), sh.clone())
                        } else {
                            (format!("{name}: BatchNorm2d"), sh.clone())
                        }
                    }
                    6 => {
                        let act = self
                            .pick(&[
                                "relu",
                                "ReLU",
                                "gelu",
                                "sigmoid",
                                "tanh",
                                "silu",
                                "ReLU6",
                                "Hardswish",
                                "LeakyReLU(0.1)",
                            ])
                            .to_string();
                        (act, sh.clone())
                    }
                    7 => {
                        let p = if self.oops() { "1.5" } else { "0.25" };
                        (format!("Dropout({p})"), sh.clone())
                    }
                    8 => {
                        let n = *self.pick(&[1u64, 2, 4]);
                        let name = self.name("pool");
                        let k = self.num(n);
                        (
                            format!("{name}: AdaptiveAvgPool2d({k})"),
                            Sh::Image(c, Some(n), Some(n)),
                        )
                    }
                    // Features over symbolic sizes are not a number: 0.
                    9 => (
                        "flatten".to_string(),
                        match (h, w) {
                            (Some(h), Some(w)) => Sh::Flat(c * h * w),
                            _ => Sh::Flat(0),
                        },
                    ),
                    10 if smallest <= 32 => {
                        let mode = self.pick(&["nearest", "bilinear"]).to_string();
                        (
                            format!("Upsample(scale_factor = 2, mode = {mode})"),
                            Sh::Image(c, h.map(|h| h * 2), w.map(|w| w * 2)),
                        )
                    }
                    11 if depth < 2 => {
                        // A `seq` of a few layers, named or not.
                        let mut cur = sh.clone();
                        let mut parts = Vec::new();
                        for _ in 0..self.rng.random_range(1..4) {
                            let stage = blocks.iter().find(|b| b.stage).map(|b| b.name.clone());
                            if let (Some(stage), true, Sh::Image(_, h, w)) =
                                (stage, self.chance(0.3), &cur)
                            {
                                let (h, w) = (*h, *w);
                                parts.push(format!("..{stage}(8, n = 2)"));
                                cur = Sh::Image(8, h, w);
                                continue;
                            }
                            let (t, next) = self.layer(&cur, blocks, depth + 1);
                            parts.push(t);
                            cur = next;
                        }
                        let name = self.name("stage");
                        (format!("{name}: seq {{ {} }}", parts.join(" -> ")), cur)
                    }
                    12 if blocks.iter().any(|b| !b.stage) && depth < 2 => {
                        let usable: Vec<&BlockSig> = blocks.iter().filter(|b| !b.stage).collect();
                        let sig = usable[self.rng.random_range(0..usable.len())];
                        let out = *self.pick(&[4u64, 8]);
                        let name = self.name("blk");
                        let repeat = if self.chance(0.3) {
                            format!("repeat {} ", self.num(2))
                        } else {
                            String::new()
                        };
                        let (args, strided) = sig.args(out, &mut self.rng, self.mistake);
                        // A repeated strided block halves each time: keep
                        // strides to single uses.
                        let (repeat, halve) = if strided {
                            (String::new(), true)
                        } else {
                            (repeat, false)
                        };
                        let size =
                            |n: Option<u64>| n.map(|n| if halve { n.div_ceil(2) } else { n });
                        (
                            format!("{name}: {repeat}{}({args})", sig.name),
                            Sh::Image(out, size(h), size(w)),
                        )
                    }
                    _ => {
                        let name = self.name("conv");
                        (
                            format!("{name}: Conv2d({c}, kernel = 3, padding = 1)"),
                            sh.clone(),
                        )
                    }
                }
            }
            Sh::Flat(0) => (
                self.pick(&["relu", "tanh", "Softmax(dim = 1)"]).to_string(),
                sh.clone(),
            ),
            Sh::Flat(f) => match self.rng.random_range(0..5) {
                0..=2 => {
                    let out = *self.pick(&[10u64, 16, 32]);
                    let input = if self.chance(0.4) {
                        let written = if self.oops() { f + 3 } else { f };
                        format!("{written} -> ")
                    } else {
                        String::new()
                    };
                    let name = self.name("fc");
                    let op = self.op("Linear");
                    let extra = self.extra();
                    (format!("{name}: {op}({input}{out}{extra})"), Sh::Flat(out))
                }
                3 => (
                    self.pick(&["relu", "tanh", "Softmax(dim = 1)", "LogSoftmax(dim = -1)"])
                        .to_string(),
                    sh.clone(),
                ),
                _ => {
                    let name = self.name("bn");
                    (format!("{name}: BatchNorm1d({f})"), sh.clone())
                }
            },
            Sh::Seq(f) => match self.rng.random_range(0..7) {
                0 => {
                    let out = *self.pick(&[8u64, 16]);
                    let name = self.name("proj");
                    (format!("{name}: Linear({out})"), Sh::Seq(out))
                }
                1 => {
                    let name = self.name("norm");
                    (format!("{name}: LayerNorm({f})"), sh.clone())
                }
                2 if f % 2 == 0 => {
                    let heads = if self.oops() { 3 } else { 2 };
                    let causal = self.pick(&["", ", causal = true"]).to_string();
                    let name = self.name("attn");
                    (
                        format!("{name}: MultiHeadAttention(heads = {heads}{causal})"),
                        sh.clone(),
                    )
                }
                3 => {
                    let kind = self.pick(&["LSTM", "GRU", "RNN"]).to_string();
                    let hidden = *self.pick(&[8u64, 16]);
                    let bi = self.chance(0.3);
                    let layers = *self.pick(&[1u64, 2]);
                    let layers = self.num(layers);
                    let name = self.name("rnn");
                    let out = if bi { 2 * hidden } else { hidden };
                    (
                        format!(
                            "{name}: {kind}({f} -> {hidden}, num_layers = {layers}, bidirectional = {bi})"
                        ),
                        Sh::Seq(out),
                    )
                }
                4 => {
                    let name = self.name("tc");
                    (
                        format!(
                            "Transpose(1, 2) -> {name}: Conv1d({f}, kernel = 3, padding = 1) -> Transpose(1, 2)"
                        ),
                        sh.clone(),
                    )
                }
                5 => ("gelu".to_string(), sh.clone()),
                _ => ("Select(1, -1)".to_string(), Sh::Flat(f)),
            },
            Sh::Ids => {
                let dim = *self.pick(&[8u64, 16]);
                let name = self.name("emb");
                let op = self.op("Embedding");
                (format!("{name}: {op}(50, {dim})"), Sh::Seq(dim))
            }
        }
    }

    /// A chain of layers from `head`.
    fn chain(&mut self, head: &str, sh: &Sh, blocks: &[BlockSig], n: usize) -> (String, Sh) {
        let mut cur = sh.clone();
        let mut text = head.to_string();
        for _ in 0..n {
            let (t, next) = self.layer(&cur, blocks, 0);
            text.push_str(" -> ");
            text.push_str(&t);
            cur = next;
        }
        if self.chance(0.15) {
            text.push_str(&format!(" : {}", self.assertion(&cur)));
        }
        (text, cur)
    }

    fn assertion(&mut self, sh: &Sh) -> String {
        let wrong = self.oops();
        let d = |n: Option<u64>, sym: &str| {
            n.map_or(sym.to_string(), |n| (n + u64::from(wrong)).to_string())
        };
        match sh {
            Sh::Image(c, h, w) => format!("[B, {c}, {}, {}]", d(*h, "_"), d(*w, "_")),
            Sh::Seq(f) => format!("[B, T, {f}]"),
            Sh::Flat(0) => "[B, _]".to_string(),
            Sh::Flat(f) => format!("[B, {}]", d(Some(*f), "_")),
            Sh::Ids => "[B, T]".to_string(),
        }
    }

    /// A network's body: `let`s (tensors, named values, merges, splits),
    /// then the output. Each `let` reads the one before it (or, with a
    /// mistake, any earlier value), so every value is used.
    fn body(&mut self, input: &str, sh: &Sh, blocks: &[BlockSig]) -> String {
        let mut lines = Vec::new();
        let mut vars: Vec<(String, Sh)> = vec![(input.to_string(), sh.clone())];
        if self.chance(0.3) {
            let v = self.name("width");
            let e = if self.oops() { "nowhere + 1" } else { "4 * 2" };
            lines.push(format!("let {v} = {e};"));
            let (last, _) = vars.last().unwrap().clone();
            let (t, _) = (format!("{last} -> {v}_fc: Linear({v})"), ());
            if matches!(sh, Sh::Flat(_)) {
                let name = self.name("t");
                lines.push(format!("let {name} = {t};"));
                vars.push((name, Sh::Flat(8)));
            } else {
                // An unused named value is not an error; a use is better.
                lines.pop();
            }
        }
        for _ in 0..self.rng.random_range(0..4) {
            let (src, ssh) = if self.oops() {
                vars[self.rng.random_range(0..vars.len())].clone()
            } else {
                vars.last().unwrap().clone()
            };
            let n = self.rng.random_range(1..4);
            let (text, out) = self.chain(&src, &ssh, blocks, n);
            let v = self.name("t");
            lines.push(format!("let {v} = {text};"));
            vars.push((v, out));
        }
        let (a, ash) = vars.last().unwrap().clone();
        let (b, _) = vars[self.rng.random_range(0..vars.len())].clone();
        let out = match (self.rng.random_range(0..6), &ash) {
            // A merge of values of another shape only as a mistake.
            (0, _) if self.oops() => format!("{a} + {b}"),
            (1, Sh::Image(..) | Sh::Seq(_) | Sh::Flat(_)) => {
                format!("({a} * ({a} -> sigmoid)) - {a}")
            }
            (2, Sh::Image(..)) => {
                let d = self.num(1);
                format!("cat({a}, {a} -> relu, dim = {d})")
            }
            (3, Sh::Image(c, ..)) if c % 2 == 0 => {
                let (p, q) = (self.name("p"), self.name("q"));
                let n = self.num(2);
                lines.push(format!("let ({p}, {q}) = chunk({a}, {n}, dim = 1);"));
                format!("cat({q}, {p}, dim = 1)")
            }
            (4, Sh::Image(c, ..)) if *c >= 2 => {
                let (p, q) = (self.name("p"), self.name("q"));
                lines.push(format!(
                    "let ({p}, {q}) = split({a}, [1, {}], dim = 1);",
                    c - 1
                ));
                format!("cat({p}, {q}, dim = 1)")
            }
            (5, Sh::Image(..)) => format!("crop({a} + {a}, like = {a})"),
            _ => {
                let n = self.rng.random_range(1..4);
                self.chain(&a, &ash, blocks, n).0
            }
        };
        lines.push(out);
        lines.join("\n        ")
    }

    fn input(&mut self) -> (String, Sh) {
        let sym = |g: &mut Gen, n: u64| if g.chance(0.25) { None } else { Some(n) };
        match self.rng.random_range(0..5) {
            0..=2 => {
                let c = *self.pick(&[1u64, 3, 8]);
                let hw = *self.pick(&[8u64, 16, 28, 32, 33]);
                let (h, w) = (sym(self, hw), sym(self, hw));
                let t = |n: Option<u64>, s: &str| n.map_or(s.to_string(), |n| n.to_string());
                (
                    format!("[B, {c}, {}, {}]", t(h, "H"), t(w, "W")),
                    Sh::Image(c, h, w),
                )
            }
            3 => {
                let f = *self.pick(&[8u64, 16]);
                (format!("[B, T, {f}]"), Sh::Seq(f))
            }
            _ => ("[B, T] u32".to_string(), Sh::Ids),
        }
    }

    fn spec(&mut self) -> String {
        let (blocks, nets) = self.spec_parts();
        blocks
            .into_iter()
            .map(|(text, _)| text)
            .chain(nets)
            .collect::<Vec<_>>()
            .join("\n    ")
    }

    /// A spec's blocks (text, name) and networks.
    fn spec_parts(&mut self) -> (Vec<(String, String)>, Vec<String>) {
        let mut out = Vec::new();
        let mut defs = Vec::new();
        let mut blocks = Vec::new();
        for _ in 0..self.rng.random_range(0..3) {
            let (text, sig) = self.block(&blocks);
            defs.push((text, sig.name.clone()));
            blocks.push(sig);
        }
        if self.chance(0.3) {
            // A stage to splice: one chain over its parameters.
            let name = format!("Stage{}", self.rng.random_range(0..1000));
            let size = if self.oops() { "C" } else { "out" };
            defs.push((format!(
                "block {name}(x: [B, C, H, W], out: usize, n: usize = 1) {{ x -> ..repeat n {{ Conv2d({size}, kernel = 3, padding = 1) -> relu }} }}"
            ), name.clone()));
            blocks.push(BlockSig {
                name,
                stride: false,
                stage: true,
            });
        }
        for _ in 0..self.rng.random_range(1..3) {
            let (shape, sh) = self.input();
            let name = self.name("Net");
            let strict = if self.oops() {
                "#[netdsl(strict)] "
            } else {
                ""
            };
            let declared = if self.oops() {
                format!(" -> {}", self.assertion(&Sh::Flat(10)))
            } else {
                String::new()
            };
            let body = self.body("x", &sh, &blocks);
            out.push(format!(
                "{strict}pub {name}(x: {shape}){declared} {{\n        {body}\n    }}"
            ));
        }
        // Every block used (an unused one is an error of its own).
        if !blocks.is_empty() && !self.oops() {
            let uses: Vec<String> = blocks
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if b.stage {
                        format!("s{i}: seq {{ ..{}(8) }}", b.name)
                    } else {
                        format!("u{i}: {}(8)", b.name)
                    }
                })
                .collect();
            out.push(format!(
                "pub Uses(x: [B, 8, 16, 16]) {{ x -> {} }}",
                uses.join(" -> ")
            ));
        }
        (defs, out)
    }

    /// A block over images with parameters: a main path, and an `if` on
    /// its parameters choosing a projection or the input.
    fn block(&mut self, earlier: &[BlockSig]) -> (String, BlockSig) {
        let name = format!("Blk{}", self.rng.random_range(0..1000));
        let with_stride = self.chance(0.5);
        let with_p = self.chance(0.3);
        let mut params = vec!["out: usize".to_string()];
        if with_stride {
            params.push("stride: usize = 1".into());
        }
        if with_p {
            params.push("p: f64 = 0.1".into());
        }
        let stride = if with_stride { "stride" } else { "1" };
        let inner = if !earlier.is_empty() && self.chance(0.4) {
            format!(" -> inner: {}(out)", earlier[0].name)
        } else {
            String::new()
        };
        let drop = match (with_p, self.rng.random_range(0..3)) {
            (true, _) => " -> Dropout(p)",
            // Layers that exist only for some uses (an `if` in the chain).
            (false, 0) => " -> if out > 4 { extra: Conv2d(hidden, kernel = 1) -> relu }",
            (false, 1) => " -> if out > 4 { gelu } else { tanh }",
            _ => "",
        };
        let merge = if self.chance(0.7) {
            format!(
                "let s = if {stride} != 1 || C != out {{ x -> proj: Conv2d(out, kernel = 1, stride = {stride}) }} else {{ x }};\n        (y + s) -> relu"
            )
        } else {
            "y".to_string()
        };
        let text = format!(
            "block {name}(x: [B, C, H, W], {}) {{\n        let hidden = 2 * out;\n        let y = x -> c1: Conv2d(hidden, kernel = 3, stride = {stride}, padding = 1) -> relu{drop} -> c2: Conv2d(out, kernel = 3, padding = 1){inner};\n        {merge}\n    }}",
            params.join(", ")
        );
        (
            text,
            BlockSig {
                name,
                stride: with_stride,
                stage: false,
            },
        )
    }
}

struct BlockSig {
    name: String,
    stride: bool,
    /// One chain over its parameters: it can be spliced (`..Stage(8)`).
    stage: bool,
}

impl BlockSig {
    /// The arguments of a use, and whether it strides.
    fn args(&self, out: u64, rng: &mut ChaCha8Rng, mistake: f64) -> (String, bool) {
        let mut a = vec![out.to_string()];
        let strided = self.stride && rng.random_bool(0.5);
        if strided {
            a.push("stride = 2".into());
        }
        if rng.random_bool(mistake) {
            a.push(["9", "stride = -1", "q = 2", "out = 3.5"][rng.random_range(0..4)].into());
        }
        (a.join(", "), strided)
    }
}

#[test]
fn generated_specs_never_panic() {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(0x6772_616d),
        mistake: 0.0,
        names: 0,
    };
    let (mut valid, mut total) = (0, 0);
    // More specs (and another seed) with GRAMMAR_FUZZ_N / GRAMMAR_FUZZ_SEED,
    // for a longer local search than CI runs.
    let n: usize = std::env::var("GRAMMAR_FUZZ_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    if let Some(seed) = std::env::var("GRAMMAR_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        g.rng = ChaCha8Rng::seed_from_u64(seed);
    }
    for i in 0..n {
        // A third with no deliberate mistake, the rest with some.
        g.mistake = [0.0, 0.03, 0.1][i % 3];
        let spec = g.spec();
        check(&spec);
        total += 1;
        if g.mistake == 0.0 {
            let tokens = TokenStream::from_str(&spec).unwrap();
            match netdsl_compiler::expand(tokens) {
                Ok(_) => valid += 1,
                Err(d) if std::env::var("GRAMMAR_FUZZ_SHOW").is_ok() => {
                    eprintln!("----\n{spec}\n{}", d.errors[0].render());
                }
                Err(_) => {}
            }
        }
    }
    // The generator is worth its name only if it mostly writes networks
    // that compile when it means to.
    assert!(
        valid * 3 * 10 >= total * 9,
        "only {valid} of {} mistake-free specs compile",
        total / 3
    );
}

/// Every error of `source`'s invocations, expanded as rustc would (a `use`
/// handed to the defining invocation), as (line, column, message), each
/// once; the compiler must not panic.
fn file_errors(source: &str) -> std::collections::BTreeSet<(usize, usize, String)> {
    let tokens = TokenStream::from_str(source).unwrap();
    let mut bodies = Vec::new();
    invocations(tokens, &mut bodies);
    let mut out = std::collections::BTreeSet::new();
    for body in &bodies {
        let run = std::panic::catch_unwind(|| support::expand_in_file(body.clone(), &bodies));
        let Ok(result) = run else {
            panic!("the compiler panicked on:\n{source}");
        };
        if let Err(d) = result {
            for e in d.errors {
                let at = e.span.start.start();
                out.insert((at.line, at.column, e.render()));
            }
        }
    }
    out
}

/// Blocks shared between invocations are checked exactly like local ones:
/// a spec whose blocks move to a first invocation, imported by a second
/// holding the networks, reports the same errors at the same places as the
/// spec written in one invocation.
#[test]
fn imported_blocks_report_what_local_ones_do() {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(0x696d_706f),
        mistake: 0.0,
        names: 0,
    };
    let n: usize = std::env::var("GRAMMAR_FUZZ_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(300, |n: usize| n / 5);
    let mut compared = 0;
    for i in 0..n {
        g.mistake = [0.0, 0.03, 0.1][i % 3];
        let (blocks, nets) = g.spec_parts();
        if blocks.is_empty() {
            continue;
        }
        let defs: Vec<String> = blocks
            .iter()
            .map(|(text, _)| format!("pub(crate) {text}"))
            .collect();
        let names: Vec<&str> = blocks.iter().map(|(_, n)| n.as_str()).collect();
        // The same lines in both: the definitions first, then the networks.
        let one = format!(
            "network! {{\n    {}\n\n    {}\n}}",
            defs.join("\n    "),
            nets.join("\n    ")
        );
        let two = format!(
            "network! {{\n    {}\n}} network! {{ use crate::{{{}}};\n    {}\n}}",
            defs.join("\n    "),
            names.join(", "),
            nets.join("\n    ")
        );
        assert_eq!(
            file_errors(&two),
            file_errors(&one),
            "imported and local blocks differ on:\n{two}"
        );
        compared += 1;
    }
    assert!(compared * 3 >= n, "only {compared} of {n} specs had blocks");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_network_in_the_repository_survives_token_mutation() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["tests", "examples", "benches", "src"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut bodies = Vec::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        if let Ok(tokens) = TokenStream::from_str(&text) {
            let mut found = Vec::new();
            invocations(tokens, &mut found);
            bodies.extend(found.into_iter().map(|b| {
                let mut v = Vec::new();
                pieces(b, &mut v);
                v
            }));
        }
    }
    assert!(
        bodies.len() >= 100,
        "found only {} invocations",
        bodies.len()
    );
    let pool = [
        "->", ",", ":", ";", "=", "(", ")", "[", "]", "{", "}", "0", "1", "-1", "2.5", "true", "x",
        "B", "H", "_", "let", "if", "else", "seq", "repeat", "block", "pub", "Conv2d", "Linear",
        "relu", "cat", "crop", "chunk", "+", "*", "u32", "#", "!",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(0x6d75_7461);
    let rounds: usize = std::env::var("GRAMMAR_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    for body in &bodies {
        for _ in 0..rounds {
            let mut p = body.clone();
            if p.is_empty() {
                continue;
            }
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..p.len());
                match rng.random_range(0..4) {
                    0 => {
                        p.remove(i);
                        if p.is_empty() {
                            break;
                        }
                    }
                    1 => {
                        let t = p[i].clone();
                        p.insert(i, t);
                    }
                    2 if i + 1 < p.len() => p.swap(i, i + 1),
                    _ => p[i] = pool[rng.random_range(0..pool.len())].to_string(),
                }
            }
            check(&p.join(" "));
        }
    }
}
