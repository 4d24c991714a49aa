//! `netdsl::expand`: the `network!` invocations of a real source file,
//! expanded for snapshot tests of a user's own networks.

use netdsl::expand::{expand_file, expand_source, expand_source_with, ExpandError, ExpandOptions};

#[test]
fn a_file_expands_as_the_macro_does() {
    let code = expand_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/networks/lenet.rs"
    ))
    .unwrap();
    assert!(
        code.starts_with("// network! invocation 1 of 1\n"),
        "{code}"
    );
    assert!(code.contains("pub struct LeNet"));
    // The same text the compiler gives for the invocation's contents (what
    // tests/snapshots.rs pins).
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/networks/lenet.rs"
    ))
    .unwrap();
    let file: syn::File = syn::parse_str(&source).unwrap();
    let syn::Item::Macro(m) = &file.items[0] else {
        panic!("no macro")
    };
    let tokens: proc_macro2::TokenStream = m.mac.tokens.to_string().parse().unwrap();
    let direct = netdsl_compiler::expand_pretty(tokens).unwrap();
    assert_eq!(code, format!("// network! invocation 1 of 1\n{direct}"));
}

#[test]
fn invocations_in_modules_and_functions_count_in_order() {
    let source = r#"
        mod models {
            netdsl::network! { pub A(x: [B, 4]) -> [B, 2] { x -> fc: Linear(2) } }
        }
        fn build() {
            network! { B(x: [B, 3]) { x -> relu } }
        }
        macro_rules! not_ours { () => {} }
        not_ours!();
    "#;
    let code = expand_source(source).unwrap();
    let a = code.find("// network! invocation 1 of 2\n").unwrap();
    let b = code.find("// network! invocation 2 of 2\n").unwrap();
    assert!(a < b);
    assert!(code[a..b].contains("pub struct A"));
    assert!(code[b..].contains("struct B"));
}

#[test]
fn errors_name_what_went_wrong() {
    let broken = "network! { A(x: [B, 4]) { x -> relu } }\n\
                  network! { N(x: [B, 1, 28, 28]) { x -> flatten -> fc: Linear(700 -> 10) } }";
    match expand_source(broken).unwrap_err() {
        ExpandError::Compile { index, errors, .. } => {
            assert_eq!(index, 2);
            assert!(
                errors.contains("`fc` expects 700 input features"),
                "{errors}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        expand_source("fn main() {}").unwrap_err(),
        ExpandError::NoInvocation { .. }
    ));
    assert!(matches!(
        expand_source("fn main( {}").unwrap_err(),
        ExpandError::Parse { .. }
    ));
    let e = expand_file("no/such/file.rs").unwrap_err();
    assert!(
        matches!(e, ExpandError::Io { .. }) && e.to_string().contains("no/such/file.rs"),
        "{e}"
    );
}

#[test]
fn texts_print_as_lines_and_can_be_left_out() {
    let source = "network! { N(x: [B, 1, 8, 8]) -> [B, 2] { \
                  x -> conv: Conv2d(4, kernel = 3) -> relu -> flatten -> fc: Linear(2) } }";
    let code = expand_source(source).unwrap();
    // One summary row per line of the expansion, in the constant as in the docs.
    let row = code
        .lines()
        .filter(|l| l.starts_with("conv ") && l.contains("Conv2d(1 -> 4, kernel 3)"))
        .count();
    assert_eq!(row, 2, "{code}");
    assert!(
        code.contains("pub const SUMMARY: &'static str = r#\""),
        "{code}"
    );
    assert!(!code.contains("\\n"), "an escaped newline: {code}");

    let lean = expand_source_with(source, ExpandOptions::default().without_constants()).unwrap();
    for name in ["SUMMARY", "FUSIONS", "GRAPH_MERMAID", "GRAPH_DOT"] {
        assert!(
            !lean.contains(&format!("const {name}:")),
            "{name} in {lean}"
        );
    }
    // The summary stays, once, in the struct's documentation.
    let rows = lean
        .lines()
        .filter(|l| l.starts_with("conv ") && l.contains("Conv2d(1 -> 4, kernel 3)"))
        .count();
    assert_eq!(rows, 1, "{lean}");
    assert!(lean.contains("pub const MANIFEST"), "{lean}");
}
