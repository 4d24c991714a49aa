//! Built and run by `scripts/compare_expand.sh` (not part of the workspace).
//! Expansion time, the compiler before and after a change, interleaved:
//! each round times N expansions with one, then the other (order alternating),
//! and the per-round ratio new/old is reported (median and quartiles).
use proc_macro2::TokenStream;
use std::str::FromStr;
use std::time::Instant;

fn spec(path: &str) -> TokenStream {
    let source = std::fs::read_to_string(path).unwrap();
    let file: syn::File = syn::parse_str(&source).unwrap();
    let syn::Item::Macro(m) = &file.items[0] else {
        panic!()
    };
    TokenStream::from_str(&m.mac.tokens.to_string()).unwrap()
}

fn time(f: &dyn Fn(), n: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() / n as f64 * 1e3
}

fn q(v: &mut Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let root = std::env::args().nth(1).unwrap();
    let rounds: usize = std::env::args().nth(2).map_or(15, |s| s.parse().unwrap());
    // A third argument keeps only the networks whose name contains it.
    let only = std::env::args().nth(3).unwrap_or_default();
    for (name, file, n) in [
        ("VGG-16", "vgg16.rs", 40),
        ("ResNet-34", "resnet34.rs", 20),
        ("U-Net", "unet.rs", 40),
    ] {
        if !name.contains(only.as_str()) {
            continue;
        }
        let t = spec(&format!("{root}/examples/networks/{file}"));
        let o = || {
            old::expand(t.clone()).unwrap();
        };
        let w = || {
            new::expand(t.clone()).unwrap();
        };
        for _ in 0..3 {
            o();
            w();
        }
        let (mut ratios, mut olds, mut news) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            let (a, b) = if r % 2 == 0 {
                let a = time(&o, n);
                (a, time(&w, n))
            } else {
                let b = time(&w, n);
                (time(&o, n), b)
            };
            olds.push(a);
            news.push(b);
            ratios.push(b / a);
        }
        // Expansion time follows the size of the code emitted: say how it changed.
        let tokens = |s: TokenStream| {
            fn count(s: TokenStream) -> usize {
                s.into_iter()
                    .map(|t| match t {
                        proc_macro2::TokenTree::Group(g) => 1 + count(g.stream()),
                        _ => 1,
                    })
                    .sum()
            }
            count(s)
        };
        let (to, tn) = (
            tokens(old::expand(t.clone()).unwrap()),
            tokens(new::expand(t.clone()).unwrap()),
        );
        println!("{name}: old {:.2} ms, new {:.2} ms (medians), new/old median {:.3} (q1 {:.3}, q3 {:.3}), {rounds} rounds; tokens emitted: old {to}, new {tn}",
            q(&mut olds, 0.5), q(&mut news, 0.5), q(&mut ratios.clone(), 0.5), q(&mut ratios.clone(), 0.25), q(&mut ratios, 0.75));
    }
}
