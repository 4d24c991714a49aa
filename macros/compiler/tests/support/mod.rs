//! Helpers shared by the compiler's property tests (`fuzz.rs`,
//! `grammar_fuzz.rs`) and the help-edit test.
#![allow(dead_code)]

use std::panic;
use std::str::FromStr;

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// The tokens of `s`, flattened: delimiters become separate pieces.
pub fn pieces(ts: TokenStream, out: &mut Vec<String>) {
    for tt in ts {
        match tt {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::None => ("", ""),
                };
                out.push(open.into());
                pieces(g.stream(), out);
                out.push(close.into());
            }
            other => out.push(other.to_string()),
        }
    }
}

/// Expands `source`: the compiler must not panic, and every error must
/// point inside it (never at the macro call).
pub fn check(source: &str) {
    // A leading newline: real tokens start on line 2, the macro call site is line 1.
    let source = format!("\n{source}");
    let Ok(tokens) = TokenStream::from_str(&source) else {
        return; // not Rust tokens: rustc rejects these before any macro runs
    };
    let result = panic::catch_unwind(|| netdsl_compiler::expand(tokens));
    let Ok(result) = result else {
        panic!("the compiler panicked on:\n{source}");
    };
    check_spans(&source, &result);
}

/// Every error of an expansion of `source` (whose first line is left
/// empty: the macro call's) points inside it, never at the macro call.
pub fn check_spans(source: &str, result: &Result<TokenStream, netdsl_compiler::Diagnostics>) {
    let lines = source.lines().count();
    if let Err(d) = result {
        assert!(!d.errors.is_empty());
        for e in &d.errors {
            for at in [e.span.start.start(), e.span.end.end()] {
                assert!(
                    (2..=lines).contains(&at.line),
                    "error `{}` at line {} outside the input ({} lines):\n{source}",
                    e.render(),
                    at.line,
                    lines
                );
            }
        }
    }
}

/// The bodies of every `network! { .. }` in a token stream, recursively.
pub fn invocations(tokens: TokenStream, out: &mut Vec<TokenStream>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        if let TokenTree::Group(g) = tree {
            let is_call = i >= 2
                && matches!(&trees[i - 1], TokenTree::Punct(p) if p.as_char() == '!')
                && matches!(&trees[i - 2], TokenTree::Ident(id) if id == "network");
            if is_call && g.delimiter() == Delimiter::Brace {
                out.push(g.stream());
            } else {
                invocations(g.stream(), out);
            }
        }
    }
}

/// Expands `body` as rustc would with the other invocations of its file,
/// `file`, around it: a `use path::Block;` is handed to the macro that
/// `Block`'s defining invocation emits, whose `@import { .. }` tokens come
/// back in front of the rest. `Ok` with no tokens when no invocation of the
/// file shares the block (rustc reports that, not the compiler).
pub fn expand_in_file(
    body: TokenStream,
    file: &[TokenStream],
) -> Result<TokenStream, netdsl_compiler::Diagnostics> {
    let mut body = body;
    // Each round hands over one `use`; a bound keeps a broken file finite.
    for _ in 0..64 {
        let Some(Ok(call)) = netdsl_compiler::imports::hand_over(&body) else {
            return netdsl_compiler::expand(body);
        };
        let trees: Vec<TokenTree> = call.into_iter().collect();
        let (Some(TokenTree::Group(rest)), Some(TokenTree::Ident(name))) =
            (trees.last(), trees.len().checked_sub(3).map(|i| &trees[i]))
        else {
            return netdsl_compiler::expand(body);
        };
        let wanted = format!("__netdsl_block_{name}");
        let shared = file.iter().find_map(|other| {
            let out = match netdsl_compiler::expand(other.clone()) {
                Ok(t) => t,
                Err(d) => d.fallback,
            };
            handed_tokens(out, &wanted)
        });
        let Some(shared) = shared else {
            return Ok(TokenStream::new());
        };
        let mut next: TokenStream = "@import".parse().unwrap();
        next.extend([TokenTree::Group(proc_macro2::Group::new(
            Delimiter::Brace,
            shared,
        ))]);
        next.extend(rest.stream());
        body = next;
    }
    netdsl_compiler::expand(body)
}

/// The `@import { .. }` tokens of the `macro_rules! wanted` in `out`.
fn handed_tokens(out: TokenStream, wanted: &str) -> Option<TokenStream> {
    let trees: Vec<TokenTree> = out.into_iter().collect();
    let at = trees.windows(3).position(|w| {
        matches!(&w[0], TokenTree::Ident(i) if i == "macro_rules")
            && matches!(&w[2], TokenTree::Ident(i) if i == wanted)
    })?;
    let TokenTree::Group(def) = trees.get(at + 3)? else {
        return None;
    };
    fn after_import(ts: TokenStream) -> Option<TokenStream> {
        let trees: Vec<TokenTree> = ts.into_iter().collect();
        for (i, t) in trees.iter().enumerate() {
            match t {
                TokenTree::Ident(id) if id == "import" => {
                    if let Some(TokenTree::Group(g)) = trees.get(i + 1) {
                        return Some(g.stream());
                    }
                }
                TokenTree::Group(g) => {
                    if let Some(found) = after_import(g.stream()) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
        None
    }
    after_import(def.stream())
}
