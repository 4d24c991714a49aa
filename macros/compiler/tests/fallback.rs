//! A network with errors still gets a struct with the real signatures (the
//! stub), so the user's own code that uses it raises no follow-on errors;
//! correct networks in the same invocation are emitted in full.
//!
//! rustc hides some follow-on errors after a `compile_error!` by itself, so
//! the UI tests alone could not tell whether the stub exists: this checks
//! the emitted items directly.

use std::str::FromStr;

use proc_macro2::TokenStream;

fn methods(item: &syn::ItemImpl) -> Vec<String> {
    item.items
        .iter()
        .filter_map(|i| match i {
            syn::ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn broken_networks_get_a_stub_with_the_same_signatures() {
    let spec = "
        pub Broken(x: [B, 1, 28, 28]) -> [B, 10] {
            x -> conv1: Conv2d(3 -> 6, kernel = 5) -> flatten -> fc: Linear(10)
        }
        pub Fine(x: [B, 4]) -> [B, 2] { x -> fc: Linear(2) }
    ";
    let d = netdsl_compiler::expand(TokenStream::from_str(spec).unwrap()).unwrap_err();
    assert_eq!(d.errors.len(), 1, "{d}");
    let file: syn::File = syn::parse2(d.fallback.clone()).unwrap();
    let structs: Vec<&syn::ItemStruct> = file
        .items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Struct(s) => Some(s),
            _ => None,
        })
        .collect();
    let impls: Vec<&syn::ItemImpl> = file
        .items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Impl(i) => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(structs.len(), 2);
    assert_eq!(structs[0].ident, "Broken");
    // The stub has no parameter fields, only the state every network has
    // (fusion switch, mode, dropout generator); `Fine` has its `fc` too.
    assert_eq!(structs[1].ident, "Fine");
    assert_eq!(structs[1].fields.len(), structs[0].fields.len() + 1);
    assert!(structs[1]
        .fields
        .iter()
        .any(|f| f.ident.as_ref().is_some_and(|i| i == "fc")));
    let expected = methods(impls[1]);
    for m in [
        "new",
        "new_seeded",
        "load",
        "save",
        "from_source",
        "forward",
        "train",
        "eval",
        "vars",
    ] {
        assert!(
            expected.iter().any(|e| e == m),
            "{m} missing from {expected:?}"
        );
    }
    assert_eq!(methods(impls[0]), expected);
    // The same signatures, not just the same names.
    let sig = |item: &syn::ItemImpl, name: &str| {
        item.items.iter().find_map(|i| match i {
            syn::ImplItem::Fn(f) if f.sig.ident == name => {
                let s = &f.sig;
                Some(quote::quote!(#s).to_string())
            }
            _ => None,
        })
    };
    for name in &expected {
        assert_eq!(sig(impls[0], name), sig(impls[1], name), "{name}");
    }
    // And the compile errors come first.
    let errors = d.to_compile_errors().to_string();
    assert!(errors.starts_with(":: core :: compile_error !"), "{errors}");
}
