//! Named values: `let hidden = C * t;` in a body, and block parameter
//! defaults computed from other parameters and from the input's sizes.

use std::str::FromStr;

use proc_macro2::TokenStream;

fn expand(spec: &str) -> Result<String, String> {
    netdsl_compiler::expand_pretty(TokenStream::from_str(spec).unwrap()).map_err(|d| d.to_string())
}

/// The `MANIFEST` entries (state_dict name and shape) of an expansion.
fn manifest_line(code: &str, name: &str) -> String {
    let at = code
        .find(&format!("\"{name}\""))
        .unwrap_or_else(|| panic!("no `{name}` in\n{code}"));
    code[at..].lines().take(3).collect::<Vec<_>>().join(" ")
}

#[test]
fn a_let_of_a_number_is_usable_as_an_argument_and_in_shapes() {
    let code = expand(
        "Net(x: [B, 8, 16, 16]) -> [B, 10] {
            let t = 4;
            let hidden = 8 * t;
            let side = 16 / 2;
            x -> expand: Conv2d(hidden, kernel = 1) : [B, hidden, 16, 16]
              -> max_pool(2) : [B, hidden, side, side]
              -> flatten -> fc: Linear(hidden * side * side -> 10)
        }",
    )
    .unwrap();
    assert!(
        manifest_line(&code, "expand.weight").contains("32"),
        "{code}"
    );
    assert!(manifest_line(&code, "fc.weight").contains("2048"), "{code}");
}

#[test]
fn a_let_over_a_symbolic_size_is_a_size() {
    let code = expand(
        "Net(x: [B, 3, H, W]) -> [B, 3, H, W] {
            let half = H / 2;
            x -> max_pool(2) : [B, 3, half, W / 2] -> upsample(scale_factor = 2)
        }",
    );
    assert!(code.is_ok(), "{code:?}");
}

#[test]
fn named_values_in_blocks_and_computed_defaults() {
    let code = expand(
        "block Expand(x: [B, C, H, W], t: usize = 6, hidden: usize = C * t, out: usize = C) {
            let squeezed = hidden / 2;
            x -> a: Conv2d(hidden, kernel = 1) -> b: Conv2d(squeezed, kernel = 1) -> c: Conv2d(out, kernel = 1)
        }
        Net(x: [B, 4, 8, 8]) -> [B, 4, 8, 8] {
            x -> e1: Expand() -> e2: Expand(t = 2) -> e3: Expand(hidden = 10)
        }",
    )
    .unwrap();
    assert!(manifest_line(&code, "e1.a.weight").contains("24"), "{code}");
    assert!(manifest_line(&code, "e1.b.weight").contains("12"), "{code}");
    assert!(manifest_line(&code, "e2.a.weight").contains("8"), "{code}");
    assert!(manifest_line(&code, "e3.b.weight").contains("5"), "{code}");
}

#[test]
fn a_value_let_that_shadows_or_misreads_is_an_error() {
    let err = expand(
        "block Blk(x: [B, C, H, W], out: usize) { let out = 3; x -> c: Conv2d(out, kernel = 1) }
         Net(x: [B, 4, 8, 8]) { x -> b: Blk(2) }",
    )
    .unwrap_err();
    assert!(
        err.contains("`out` is already bound, as a parameter"),
        "{err}"
    );

    let err = expand("Net(x: [B, 4]) { let k = 3 / 2; x -> fc: Linear(k) }").unwrap_err();
    assert!(err.contains("not a whole number"), "{err}");

    let err = expand("Net(x: [B, 4]) { let k = 2 * widht; x -> fc: Linear(k) }").unwrap_err();
    assert!(err.contains("unknown name `widht`"), "{err}");
    assert_eq!(
        err.matches("error:").count(),
        1,
        "no follow-on error: {err}"
    );

    // A named value is a number, not a tensor.
    let err = expand("Net(x: [B, 4]) { let k = 3; k -> fc: Linear(2) }").unwrap_err();
    assert!(err.contains("`k` is a number here, not a tensor"), "{err}");
}

#[test]
fn tensor_lets_still_read_as_tensors() {
    let code = expand(
        "Net(x: [B, 4]) -> [B, 4] {
            let y = x;
            let s = x + y;
            s -> fc: Linear(4)
        }",
    );
    assert!(code.is_ok(), "{code:?}");
}
