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
    let lines = source.lines().count();
    let result = panic::catch_unwind(|| netdsl_compiler::expand(tokens));
    let Ok(result) = result else {
        panic!("the compiler panicked on:\n{source}");
    };
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
