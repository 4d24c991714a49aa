//! Snapshots of what `network!` expands to, pretty-printed: one per network
//! under `examples/networks/`. Review changes with `cargo insta review`.

use std::str::FromStr;

#[test]
fn expansions() {
    insta::glob!("../examples/networks", "*.rs", |path| {
        let source = std::fs::read_to_string(path).unwrap();
        let file: syn::File = syn::parse_str(&source).unwrap();
        let mut out = String::new();
        for item in file.items {
            let syn::Item::Macro(m) = item else { continue };
            let tokens = proc_macro2::TokenStream::from_str(&m.mac.tokens.to_string()).unwrap();
            match netdsl_compiler::expand_pretty(tokens) {
                Ok(code) => out.push_str(&code),
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
        insta::assert_snapshot!(out);
    });
}
