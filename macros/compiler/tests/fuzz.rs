//! Property test: the compiler never panics, whatever tokens it is given,
//! and every error it reports points inside the input (never at the macro
//! call). Inputs are valid specs with tokens dropped, duplicated, swapped or
//! replaced, and random token soup; the generator is seeded, so a failure
//! reproduces.

use std::str::FromStr;

use proc_macro2::TokenStream;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod support;
use support::{check, pieces};

const CORPUS: &[&str] = &[
    "/// LeNet
    pub LeNet(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(1 -> 6, kernel = 5, padding = 2) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)  : [B, 16, 5, 5]
          -> flatten -> fc1: Linear(400 -> 120) -> relu -> fc2: Linear(84) -> relu
          -> fc3: Linear(10) -> LogSoftmax(dim = -1)
    }",
    "Net(x: [N, 3, 32, 32]) {
        x -> c1: Conv2d(8, kernel = (3, 5), stride = (2, 1), padding = (1, 2, 0, 3), groups = 1, bias = false)
          -> sigmoid -> avg_pool(kernel = 2, stride = 1) : [N, 8, _, _] -> tanh
          -> Flatten(start_dim = 1, end_dim = -1) -> head: Linear(5) -> Softmax(1)
    }
    pub(crate) Other(y: [B, C, H, W]) -> [B, C, H, W] { y -> relu }",
    "Graph(x: [B, 3, 32, 32]) -> [B, 16, 28, 28] {
        let a = x -> c1: Conv2d(8, kernel = 3) -> relu;
        let b = a -> max_pool(2) -> up: ConvTranspose2d(8, kernel = 2, stride = 2);
        let s = (crop(a, like = b) + b) -> bn: BatchNorm2d;
        cat(s, b, dim = 1) -> c2: Conv2d(16, kernel = 3) : [B, 16, 28, 28]
    }",
    "block Res(x: [B, C, H, W], out: usize, stride: usize = 1, p: f64 = 0.5) -> [B, out, (H - 1) / stride + 1, (W - 1) / stride + 1] {
        let y = x -> c1: Conv2d(2 * out / 2, kernel = 3, stride = stride, padding = 1) -> relu -> d: Dropout(p);
        let s = if stride != 1 || C != out { x -> proj: seq { Conv2d(out, kernel = 1, stride = stride) -> BatchNorm2d } } else { x };
        (y + s) -> relu
    }
    block Twice(x: [B, C, H, W], out: usize) { x -> seq { Res(out) -> Res(out) } }
    block Gate(x: [B, C, H, W], g: [B, C, H, W]) { x * (g -> sigmoid) }
    pub Net(x: [B, 3, H, W]) -> [B, 10] {
        let a0 = x -> pre: Conv2d(32, kernel = 2, stride = 2);
        let a = x -> stem: Conv2d(8, kernel = 3, padding = 1) -> layers: repeat 2 Res(8) -> t: Twice(16)
                  -> down: Res(32, stride = 2) -> gate: Gate(a0) : [B, 32, H/2, W/2];
        let (p, q) = chunk(a, 2, dim = 1);
        let (r1, r2) = split(p + q, [4, 12], dim = 1);
        let c = crop(cat(r2, r1, dim = 1), size = (2, 2), top = 0, left = 0);
        c -> more: repeat 2 { Conv2d(32, kernel = 1) -> relu } -> flatten -> fc: Linear(10)
    }",
    "block Dec(x: [B, T, E], mem: [B, S, E], heads: usize) -> [B, T, E] {
        let y = (x + (x -> sa: MultiHeadAttention(heads = heads, causal = true))) -> n1: LayerNorm;
        (y + (y -> ca: MultiHeadAttention(heads = heads, memory = mem))) -> n2: LayerNorm
    }
    pub Lm(ids: [B, T] u32, lens: [B] u32, h0: [2, B, 16], c0: [2, B, 16]) -> ([B, T, 11], [2, B, 16], [B, 16]) {
        let (y, (h, c)) = ids -> emb: Embedding(11, 8) -> lstm: LSTM(8 -> 16, layers = 2, init = (h0, c0), lengths = lens);
        let (g, _) = y -> gru: GRU(16, bidirectional = true, batch_first = true);
        let z = g -> proj: Linear(16) -> d: Dec(y, heads = 2);
        (z -> fc: Linear(11), h, c -> Select(0, -1))
    }",
];

const POOL: &[&str] = &[
    "->",
    ":",
    ",",
    "=",
    "-",
    "0",
    "1",
    "3",
    "-2",
    "28",
    "99999999999999999999",
    "1.5",
    "true",
    "same",
    "B",
    "x",
    "Conv2d",
    "Linear",
    "relu",
    "max_pool",
    "flatten",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "_",
    "pub",
    "#",
    "!",
    "'a",
    "\"s\"",
    "kernel",
    "padding",
    "stride",
    "groups",
    "dim",
    ";",
    "block",
    "repeat",
    "if",
    "else",
    "usize",
    "*",
    "/",
    "chunk",
    "split",
    "crop",
    "out",
    "C",
    "H",
    "!=",
    "||",
    "Res",
];

#[test]
fn valid_corpus_expands() {
    for s in CORPUS {
        let tokens = TokenStream::from_str(s).unwrap();
        if let Err(d) = netdsl_compiler::expand(tokens) {
            panic!("{d}");
        }
    }
}

#[test]
fn mutated_specs_never_panic_and_errors_point_inside() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x6e65_7464_736c);
    let corpus: Vec<Vec<String>> = CORPUS
        .iter()
        .map(|s| {
            let mut v = Vec::new();
            pieces(TokenStream::from_str(s).unwrap(), &mut v);
            v
        })
        .collect();
    let mut tried = 0;
    for _ in 0..4000 {
        let mut p = corpus[rng.random_range(0..corpus.len())].clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..p.len());
            match rng.random_range(0..4) {
                0 => {
                    p.remove(i);
                }
                1 => {
                    let t = p[i].clone();
                    p.insert(i, t);
                }
                2 if i + 1 < p.len() => p.swap(i, i + 1),
                _ => p[i] = POOL[rng.random_range(0..POOL.len())].to_string(),
            }
        }
        check(&p.join(" "));
        tried += 1;
    }
    for _ in 0..1000 {
        let n = rng.random_range(0..30);
        let soup: Vec<&str> = (0..n)
            .map(|_| POOL[rng.random_range(0..POOL.len())])
            .collect();
        check(&soup.join(" "));
        tried += 1;
    }
    assert_eq!(tried, 5000);
}
