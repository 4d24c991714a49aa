//! The grammar's spec generator, shared by the compiler's property tests
//! (`grammar_fuzz.rs`) and the crate built from a sample of accepted specs
//! (the root's `tests/fuzz_sample.rs`, which includes this file by path).
//!
//! Mistakes are drawn from their own random stream (`bad`), so a spec and
//! its twin generated with the same seed and no mistakes have the same
//! layers, and differ only where a mistake was injected (unless a mistake
//! changed what came after it: `diverged`).
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The shape the generator believes a tensor has (it keeps most layers
/// valid; the compiler is the judge).
#[derive(Clone)]
pub enum Sh {
    /// [B, C, H, W], `None` for a symbolic size.
    Image(u64, Option<u64>, Option<u64>),
    /// [B, T, F] (T symbolic or known).
    Seq(u64),
    /// [B, F]
    Flat(u64),
    /// [B, T] u32 token ids.
    Ids,
}

pub struct Gen {
    rng: ChaCha8Rng,
    /// The mistakes' own stream: whether one is made, and which.
    bad: ChaCha8Rng,
    /// Probability of a deliberate mistake per choice.
    pub mistake: f64,
    names: usize,
    /// Mistakes injected so far.
    pub mistakes: usize,
    /// A mistake changed the layers generated after it, so the spec's
    /// mistake-free twin is not the same spec without its mistakes.
    pub diverged: bool,
    /// A mistake whose errors are one per affected layer, not one in all
    /// (`#[netdsl(strict)]` on a network with several lossy layers).
    pub unbounded: bool,
    /// The networks of the last spec: name, an input of the declared shape
    /// (symbols at the generator's sizes, `B` = 2, `T` = 5), whether it is
    /// token ids.
    pub nets: Vec<(String, Vec<usize>, bool)>,
}

impl Gen {
    pub fn new(seed: u64, mistake: f64) -> Gen {
        Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            bad: ChaCha8Rng::seed_from_u64(seed ^ 0x6261_6421),
            mistake,
            names: 0,
            mistakes: 0,
            diverged: false,
            unbounded: false,
            nets: Vec::new(),
        }
    }

    /// Starts the count of mistakes afresh (for the next spec).
    pub fn reset_counts(&mut self) {
        self.mistakes = 0;
        self.diverged = false;
        self.unbounded = false;
    }

    /// One of `xs`, drawn from the mistakes' stream.
    fn bad_pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.bad.random_range(0..xs.len())]
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.rng.random_range(0..xs.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn oops(&mut self) -> bool {
        let hit = self.bad.random_bool(self.mistake);
        self.mistakes += usize::from(hit);
        hit
    }

    fn name(&mut self, base: &str) -> String {
        self.names += 1;
        format!("{base}{}", self.names)
    }

    /// A number, or now and then a wrong one.
    fn num(&mut self, good: u64) -> String {
        if self.oops() {
            self.bad_pick(&[
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
            self.bad_pick(&[
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
            self.bad_pick(&[
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
                        let (args, strided) = sig.args(out, self);
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
                let i = self.bad.random_range(0..vars.len());
                self.diverged |= i + 1 != vars.len();
                vars[i].clone()
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
            (0, _) if self.oops() => {
                self.diverged = true;
                format!("{a} + {b}")
            }
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

    /// An input: its declared shape, what the generator believes it is, and
    /// a size it could be run at.
    fn input(&mut self) -> (String, Sh, Vec<usize>) {
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
                    vec![2, c as usize, hw as usize, hw as usize],
                )
            }
            3 => {
                let f = *self.pick(&[8u64, 16]);
                (format!("[B, T, {f}]"), Sh::Seq(f), vec![2, 5, f as usize])
            }
            _ => ("[B, T] u32".to_string(), Sh::Ids, vec![2, 5]),
        }
    }

    pub fn spec(&mut self) -> String {
        let (blocks, nets) = self.spec_parts();
        blocks
            .into_iter()
            .map(|(text, _)| text)
            .chain(nets)
            .collect::<Vec<_>>()
            .join("\n    ")
    }

    /// A spec's blocks (text, name) and networks.
    pub fn spec_parts(&mut self) -> (Vec<(String, String)>, Vec<String>) {
        let mut out = Vec::new();
        let mut defs = Vec::new();
        let mut blocks = Vec::new();
        self.nets.clear();
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
            let (shape, sh, dims) = self.input();
            let name = self.name("Net");
            self.nets.push((name.clone(), dims, matches!(sh, Sh::Ids)));
            let strict = if self.oops() {
                self.unbounded = true;
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
        // Every block used (an unused one is an error of its own: leaving
        // out the uses is one mistake per block).
        let unused = !blocks.is_empty() && self.oops();
        if unused {
            self.mistakes += blocks.len() - 1;
        }
        if !blocks.is_empty() && !unused {
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
            self.nets
                .push(("Uses".to_string(), vec![2, 8, 16, 16], false));
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
    fn args(&self, out: u64, g: &mut Gen) -> (String, bool) {
        let mut a = vec![out.to_string()];
        let strided = self.stride && g.chance(0.5);
        if strided {
            a.push("stride = 2".into());
        }
        if g.oops() {
            a.push(
                g.bad_pick(&["9", "stride = -1", "q = 2", "out = 3.5"])
                    .to_string(),
            );
        }
        (a.join(", "), strided)
    }
}
