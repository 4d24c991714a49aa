//! `summary_at`: the summary of a network over symbolic sizes
//! (`[B, 3, H, W]`), evaluated at given sizes, is the `SUMMARY` of the same
//! network declared at those sizes: every output shape, multiply-add count
//! and total. Covered: blocks, crops to a symbolic size, 2-D and 1-D
//! convolutions and pools, batch norm, upsampling, flatten (a product of
//! symbols), filters, attention (quadratic in `T`), embeddings. Then the
//! errors: a missing, unknown or repeated symbol, and sizes the network's
//! shape rules reject.

use netdsl::network;

/// Declares a network twice from one body: over symbols and at fixed
/// sizes (`Sym / Fixed (x: [B, 3, H, W] / [2, 3, 64, 72]) { .. }`), with
/// the blocks it uses.
macro_rules! both {
    ([$($blocks:tt)*] $sym:ident / $fixed:ident ($x:ident: $sin:tt / $fin:tt $($dt:ident)?) $body:tt) => {
        network! {
            $($blocks)*
            $sym($x: $sin $($dt)?) $body
            $fixed($x: $fin $($dt)?) $body
        }
    };
}

// A two-level U-Net with valid convolutions: crops to symbolic sizes.
both! {
    [
        block DoubleConv(x: [B, C, H, W], out: usize) -> [B, out, H - 4, W - 4] {
            x -> seq { Conv2d(out, kernel = 3) -> ReLU -> Conv2d(out, kernel = 3) -> ReLU }
        }
    ]
    UNetSym / UNetFixed (x: [B, 3, H, W] / [2, 3, 64, 72]) {
        let d1 = x -> down1: DoubleConv(4);
        let d2 = d1 -> max_pool(2) -> down2: DoubleConv(8);
        let b = d2 -> max_pool(2) -> bottom: DoubleConv(16);
        let u2 = b -> up2: ConvTranspose2d(8, kernel = 2, stride = 2);
        let y2 = cat(crop(d2, like = u2), u2, dim = 1) -> dec2: DoubleConv(8);
        let u1 = y2 -> up1: ConvTranspose2d(4, kernel = 2, stride = 2);
        cat(crop(d1, like = u1), u1, dim = 1) -> dec1: DoubleConv(4) -> out: Conv2d(2, kernel = 1)
    }
}

both! {
    [] CnnSym / CnnFixed (x: [B, 3, H, W] / [1, 3, 32, 48]) {
        x -> blur: Gaussian(1.0) -> conv1: Conv2d(8, kernel = 3, padding = 1) -> bn1: BatchNorm2d -> ReLU
          -> max_pool(2) -> conv2: Conv2d(16, kernel = 3, stride = 2, padding = 1) -> ReLU
          -> Upsample(scale_factor = 2) -> Flatten
    }
}

both! {
    [] TcnSym / TcnFixed (x: [B, 4, T] / [B, 4, 40]) {
        x -> c1: Conv1d(8, kernel = 3, causal = true) -> ReLU -> max_pool1d(2)
          -> c2: Conv1d(8, kernel = 3, dilation = 2, padding = 2)
    }
}

both! {
    [] AttnSym / AttnFixed (x: [B, T, 16] / [3, 10, 16]) {
        x -> attn: MultiHeadAttention(16, heads = 4) -> ln: LayerNorm -> fc: Linear(32) -> GELU
    }
}

both! {
    [] TokSym / TokFixed (ids: [B, T] / [B, 12] u32) {
        ids -> emb: Embedding(100, 16) -> SinusoidalEncoding -> fc: Linear(8)
    }
}

/// `at`'s summary of the symbolic network, with its name replaced by the
/// fixed one's, against the fixed one's `SUMMARY`.
fn same(sym: netdsl::Result<String>, (sym_name, fixed_name): (&str, &str), fixed: &str) {
    let sym = sym.unwrap().replacen(sym_name, fixed_name, 1);
    assert_eq!(sym, fixed, "\nat the sizes:\n{sym}\ndeclared:\n{fixed}");
    assert!(!fixed.contains('?'), "{fixed}");
}

#[test]
fn unet_at_a_size_is_the_unet_of_that_size() {
    assert!(UNetSym::SUMMARY.contains('?'), "{}", UNetSym::SUMMARY);
    same(
        UNetSym::summary_at(&[("B", 2), ("H", 64), ("W", 72)]),
        ("UNetSym", "UNetFixed"),
        UNetFixed::SUMMARY,
    );
    // The order of the sizes does not matter.
    assert_eq!(
        UNetSym::summary_at(&[("W", 72), ("B", 2), ("H", 64)]).unwrap(),
        UNetSym::summary_at(&[("B", 2), ("H", 64), ("W", 72)]).unwrap()
    );
}

#[test]
fn cnn_filters_flatten_at_a_size() {
    same(
        CnnSym::summary_at(&[("B", 1), ("H", 32), ("W", 48)]),
        ("CnnSym", "CnnFixed"),
        CnnFixed::SUMMARY,
    );
}

#[test]
fn one_d_attention_and_embeddings_at_a_size() {
    // The batch stays a symbol in the fixed networks: left out, it stays
    // `B` in the shapes too.
    let tcn = TcnSym::summary_at(&[("T", 40)]).unwrap();
    same(Ok(tcn), ("TcnSym", "TcnFixed"), TcnFixed::SUMMARY);
    assert!(TcnFixed::SUMMARY.contains("Time (Conv1d and 1-D pools)"));
    same(
        AttnSym::summary_at(&[("B", 3), ("T", 10)]),
        ("AttnSym", "AttnFixed"),
        AttnFixed::SUMMARY,
    );
    let tok = TokSym::summary_at(&[("T", 12), ("B", 5)]).unwrap();
    same(
        Ok(tok.replace("[5, ", "[B, ")),
        ("TokSym", "TokFixed"),
        TokFixed::SUMMARY,
    );
}

#[test]
fn attention_is_quadratic_in_t() {
    // 4 E² T + 2 T² E per sample, E = 16: 10,240 + 3,200 at T = 10.
    let s = AttnSym::summary_at(&[("B", 1), ("T", 10)]).unwrap();
    let row = s.lines().find(|l| l.starts_with("attn")).unwrap();
    assert!(row.contains("13,440  26,880"), "{row}");
}

#[test]
fn wrong_sizes_are_typed_errors() {
    let err = |sizes: &[(&str, usize)]| UNetSym::summary_at(sizes).unwrap_err();
    match err(&[("B", 2), ("H", 64)]) {
        netdsl::Error::SummarySizes {
            network,
            symbols,
            reason,
            ..
        } => {
            assert_eq!(network, "UNetSym");
            assert_eq!(symbols, ["B", "H", "W"]);
            assert_eq!(reason, "`W` has no size");
        }
        e => panic!("{e}"),
    }
    // The batch alone may be left out (the issue's own example): the
    // figures are per sample and the shapes keep `B`.
    let s = UNetSym::summary_at(&[("H", 64), ("W", 64)]).unwrap();
    assert!(s.contains("[B, "), "{s}");
    assert_eq!(
        s.replace("[B, ", "[2, "),
        UNetSym::summary_at(&[("B", 2), ("H", 64), ("W", 64)]).unwrap()
    );
    let m = err(&[("B", 1), ("H", 64), ("W", 64), ("C", 3)]).to_string();
    assert!(m.contains("`C` is not a symbol of the input"), "{m}");
    assert!(
        m.contains("the symbols of its input [B, 3, H, W] are B, H, W, but was given [B = 1, H = 64, W = 64, C = 3]"),
        "{m}"
    );
    let m = err(&[("B", 1), ("H", 64), ("W", 64), ("W", 68)]).to_string();
    assert!(m.contains("`W` is given twice"), "{m}");
    // Any size PyTorch takes: 66 rows pool to 31, then 13, as in PyTorch
    // (the crops absorb the odd sizes).
    let at66 = UNetSym::summary_at(&[("B", 1), ("H", 66), ("W", 64)]).unwrap();
    assert!(at66.contains("[1, 8, 13, 13]"), "{at66}");
    let m = err(&[("B", 1), ("H", 28), ("W", 64)]).to_string();
    assert!(m.contains("(`H`) is 28, but must be at least"), "{m}");
}
