//! Prints what `network!` expands to for a file of `network!` contents, or
//! its errors: `cargo run -p netdsl-compiler --example expand -- spec.txt`.

use std::str::FromStr;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: expand <file with the contents of a network! invocation>");
        std::process::exit(2);
    };
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(2);
        }
    };
    let tokens = match proc_macro2::TokenStream::from_str(&source) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("not Rust tokens: {e}");
            std::process::exit(2);
        }
    };
    match netdsl_compiler::expand_pretty(tokens) {
        Ok(code) => println!("{code}"),
        Err(d) => {
            for e in &d.errors {
                let (s, t) = (e.span.start.start(), e.span.end.end());
                println!(
                    "error at {}:{}..{}:{}: {}\n",
                    s.line,
                    s.column,
                    t.line,
                    t.column,
                    e.render()
                );
            }
            std::process::exit(1);
        }
    }
}
