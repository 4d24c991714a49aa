//! How long `network!` takes to expand a VGG-16-sized network (38 layers,
//! 138M parameters): parse, resolve, infer, check, lower and emit, and the
//! same again with an error (which also runs the search for a fix); and
//! networks built from blocks: ResNet-34 (16 uses of one block, each checked
//! at its use, merged into one struct) and the original U-Net (nine uses);
//! and the whole model zoo, `src/models.rs`, as one invocation.
//!
//! `cargo bench --bench expand`

use std::str::FromStr;

use criterion::{criterion_group, criterion_main, Criterion};
use proc_macro2::TokenStream;

fn spec(path: &str) -> TokenStream {
    let source = std::fs::read_to_string(path).unwrap();
    let file: syn::File = syn::parse_str(&source).unwrap();
    let Some(m) = file.items.iter().find_map(|i| match i {
        syn::Item::Macro(m) => Some(m),
        _ => None,
    }) else {
        panic!("{path} holds no network! invocation")
    };
    TokenStream::from_str(&m.mac.tokens.to_string()).unwrap()
}

fn bench(c: &mut Criterion) {
    let vgg = spec("examples/networks/vgg16.rs");
    assert!(netdsl_compiler::expand(vgg.clone()).is_ok());
    c.bench_function("expand VGG-16", |b| {
        b.iter(|| netdsl_compiler::expand(vgg.clone()).unwrap())
    });
    c.bench_function("expand + pretty-print VGG-16", |b| {
        b.iter(|| netdsl_compiler::expand_pretty(vgg.clone()).unwrap())
    });
    let broken =
        TokenStream::from_str(&vgg.to_string().replacen("padding = 1", "padding = 0", 1)).unwrap();
    assert!(netdsl_compiler::expand(broken.clone()).is_err());
    c.bench_function("expand VGG-16 with an error (fix search)", |b| {
        b.iter(|| netdsl_compiler::expand(broken.clone()).unwrap_err())
    });
    for (name, path) in [
        ("ResNet-34", "examples/networks/resnet34.rs"),
        ("U-Net", "examples/networks/unet.rs"),
        ("the model zoo (8 networks, 6 blocks)", "src/models.rs"),
    ] {
        let tokens = spec(path);
        assert!(netdsl_compiler::expand(tokens.clone()).is_ok());
        c.bench_function(&format!("expand {name}"), |b| {
            b.iter(|| netdsl_compiler::expand(tokens.clone()).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
