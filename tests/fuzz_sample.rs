//! What the compiler accepts, rustc compiles, and it runs: a sample of 50
//! specs from the grammar's generator (the compiler's fuzz tests share it)
//! that `netdsl_compiler::expand` accepts is written out as one crate, each
//! spec in its own module, with `#![deny(warnings)]`, and built and run by
//! trybuild. Its `main` builds every network with random weights and runs
//! `forward` on an input of the declared shape (each symbol at a size the
//! generator chose) and checks the output against the shape the compiler
//! inferred (`OUTPUT_SHAPE`), so a spec the compiler accepts but rustc
//! rejects, whose shapes fail at run time, or whose output is not the
//! shape the compiler said, fails this test.

use std::fmt::Write as _;
use std::str::FromStr;

#[path = "../macros/compiler/tests/support/gen.rs"]
mod gen;

/// How many accepted specs go into the crate.
const SAMPLE: usize = 50;

/// The sample's check of an output against the shape the compiler inferred
/// (`OUTPUT_SHAPE`, such as `[B, 16, H, W]`): every number and every plain
/// symbol must agree; arithmetic over symbols (`H/2`) is left unchecked.
const AGREES: &str = r#"
fn agrees(net: &str, inferred: &str, dims: &[usize], side: usize) {
    let entries: Vec<&str> = inferred.trim_matches(|c| c == '[' || c == ']').split(", ").collect();
    assert_eq!(entries.len(), dims.len(), "{net}: {dims:?}, inferred {inferred}");
    for (e, &d) in entries.iter().zip(dims) {
        let want = match *e {
            "B" => Some(2),
            "T" => Some(5),
            "H" | "W" => Some(side),
            n => n.parse().ok(),
        };
        if let Some(want) = want {
            assert_eq!(d, want, "{net}: {dims:?}, inferred {inferred}");
        }
    }
}
"#;

#[test]
fn accepted_specs_compile_without_warnings_and_run() {
    let mut g = gen::Gen::new(0x7275_7374, 0.0);
    let mut modules = String::new();
    let mut runs = String::new();
    let mut accepted = 0;
    let mut tried = 0;
    while accepted < SAMPLE {
        tried += 1;
        assert!(
            tried < 4 * SAMPLE,
            "the generator wrote too few accepted specs"
        );
        let spec = g.spec();
        let tokens = proc_macro2::TokenStream::from_str(&spec).unwrap();
        if netdsl_compiler::expand(tokens).is_err() {
            continue;
        }
        let m = accepted;
        accepted += 1;
        writeln!(
            modules,
            "mod s{m} {{\n    use netdsl::network;\n\n    network! {{\n    {spec}\n    }}\n}}\n"
        )
        .unwrap();
        for (k, (net, dims, ids)) in g.nets.iter().enumerate() {
            let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
            let input = if *ids {
                let n: usize = g.nets[k].1.iter().product();
                format!(
                    "Tensor::arange(0u32, {n}u32, &dev)?.reshape(({},))?",
                    dims.join(", ")
                )
            } else {
                format!("Tensor::randn(0f32, 1f32, ({},), &dev)?", dims.join(", "))
            };
            // The symbols' sizes: B and T as the generator runs them, H
            // and W the image side it chose.
            let side = if dims.len() == 4 { &dims[2] } else { "0" };
            writeln!(
                runs,
                "    let y = s{m}::{net}::new_seeded({m}, &dev)?.forward(&{input})?;\n    \
                 agrees(\"s{m}::{net}\", s{m}::{net}::OUTPUT_SHAPE, y.dims(), {side});"
            )
            .unwrap();
        }
    }
    let source = format!(
        "//! Written by tests/fuzz_sample.rs: {SAMPLE} specs the compiler accepted.\n\
         #![deny(warnings)]\n\n\
         use candle_core::{{Device, Tensor}};\n\n\
         {modules}\
         {AGREES}\n\
         fn main() -> Result<(), Box<dyn std::error::Error>> {{\n    \
         netdsl::silence_debug_build_warning();\n    \
         let dev = Device::Cpu;\n\
         {runs}    Ok(())\n}}\n"
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz_sample");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("accepted_specs.rs");
    std::fs::write(&path, source).unwrap();
    trybuild::TestCases::new().pass(&path);
}
