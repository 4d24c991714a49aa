//! Every help is an edit that works: for each compile-fail case in
//! `tests/ui`, the first edit its help offers is applied to the source
//! mechanically, the invocation is expanded again, and the error must be
//! gone. At least 90 % of the cases carry such an edit; the ones that
//! cannot are listed in [`NO_EDIT`] with why.
//!
//! How a help's edit is read (the first backticked snippet `S` of the
//! first help that has one; the caret is the error's span):
//! - `name: ..` where `name:` is written in the source (a layer, an input,
//!   a parameter): that item is replaced by `S`, up to the end of its op
//!   call or shape.
//! - `key = value`: the argument `key` of the call around the caret is set
//!   (added when it is not written).
//! - `Op(..)`: the call at the caret is replaced.
//! - `-> [..]` (declare) and `: [..]` (assert): the shape at the caret.
//! - `remove `key``: the argument `key` of the call at the caret goes.
//! - anything else replaces the tokens under the caret.
//!
//! A `..` inside `S`'s parentheses keeps the call's remaining arguments.

use std::path::{Path, PathBuf};

use proc_macro2::{LineColumn, TokenStream};

mod support;
use support::invocations;

/// The share of cases (percent) that must carry a working edit.
const MIN_PERCENT: usize = 90;

/// Cases whose help cannot be one edit, and why. Every other case must
/// offer an edit that works.
/// Cases whose error is rustc's, not the compiler's: nothing here expands
/// with an error.
const RUSTC_ERROR: &[(&str, &str)] = &[(
    "blocks/imported_block_not_shared",
    "a private block emits no macro to import: rustc cannot find it",
)];

const NO_EDIT: &[(&str, &str)] = &[
    (
        "shapes/merges_need_no_size",
        "two merges want sizes no input has: which skip to change is the author's",
    ),
    (
        "graph/cat_of_one_tensor_out_of_range",
        "a `cat` of one tensor: which tensor joins it is the author's",
    ),
    (
        "args/symbolic_out_channels",
        "a name bound nowhere: the number it stood for is the author's; the help lists the names that stand for numbers",
    ),
    (
        "args/unbound_name",
        "a name bound nowhere: the number it stood for is the author's",
    ),
    (
        "values/value_unknown_name",
        "a name bound nowhere in a named value, with no name spelt like it",
    ),
    (
        "blocks/symbolic_dim_as_number",
        "a size only the input decides used as a number: which number is the author's",
    ),
    (
        "blocks/body_errors_under_a_bad_use",
        "a block argument left out: its value is the author's (the help gives the signature)",
    ),
    (
        "blocks/missing_argument",
        "a block argument left out: its value is the author's (the help gives the signature)",
    ),
    (
        "blocks/tensor_input_not_a_tensor",
        "a number where a tensor goes: which tensor is the author's",
    ),
    (
        "blocks/tensor_input_wrong_shape",
        "a tensor argument of another size: the fix is where that tensor is made, a design choice",
    ),
    (
        "blocks/block_input_symbol_conflict",
        "a block that wants H = W given a non-square input: crop, pad or resize is a design choice",
    ),
    (
        "blocks/input_rank_mismatch",
        "a flat input into a block of images: the flatten may be anywhere before it",
    ),
    (
        "blocks/add_different_symbolic_sizes",
        "a residual over sizes only the input decides (H and H/2): no projection is known to agree for every H",
    ),
    (
        "blocks/chunk_without_binding",
        "the pieces need a `let` and a use each: two statements, not one edit",
    ),
    (
        "sequence/rnn_state_used_as_sequence",
        "a final state added to a sequence: they hold different things; the note says which is which",
    ),
    (
        "shapes/linear_on_rank1",
        "an input without its batch dim: the chain's input may be a `let`, so no one declaration to edit",
    ),
    (
        "shapes/mask_not_broadcasting",
        "a mask of the wrong size: it is made outside the network; the help gives the shapes that broadcast",
    ),
];

fn cases(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            cases(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

struct Error {
    first_line: String,
    help: Vec<String>,
    start: LineColumn,
    end: LineColumn,
}

/// Every error of every invocation in `source` (`None` when it is not
/// Rust tokens at all).
fn errors(source: &str) -> Option<Vec<Error>> {
    let tokens: TokenStream = source.parse().ok()?;
    let mut bodies = Vec::new();
    invocations(tokens, &mut bodies);
    let mut out = Vec::new();
    for body in &bodies {
        if let Err(d) = support::expand_in_file(body.clone(), &bodies) {
            for e in d.errors {
                out.push(Error {
                    first_line: e.message.lines().next().unwrap_or("").to_string(),
                    help: e.help.clone(),
                    start: e.span.start.start(),
                    end: e.span.end.end(),
                });
            }
        }
    }
    Some(out)
}

/// Byte offset of a line/column (line from 1, column in chars).
fn offset(source: &str, at: LineColumn) -> usize {
    let mut line_start = 0;
    for _ in 1..at.line {
        line_start += source[line_start..].find('\n').map_or(0, |i| i + 1);
    }
    source[line_start..]
        .char_indices()
        .nth(at.column)
        .map_or(source.len(), |(i, _)| line_start + i)
}

/// The end (exclusive) of the bracketed group opening at `open`.
fn group_end(src: &str, open: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i += src[i..].find('\n')?;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The identifier (with dots, for block paths) ending at `end`.
fn ident_before(src: &str, end: usize) -> usize {
    let bytes = src.as_bytes();
    let mut i = end;
    while i > 0 && (is_ident_byte(bytes[i - 1]) || bytes[i - 1] == b'.') {
        i -= 1;
    }
    i
}

fn skip_ws(src: &str, mut i: usize) -> usize {
    let bytes = src.as_bytes();
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The innermost `Op(..)` call whose parentheses hold `at`, or whose name
/// starts at `at`: (start of the name, end after `)`).
fn call_around(src: &str, at: usize) -> Option<(usize, usize)> {
    let bytes = src.as_bytes();
    // A call whose name starts at the caret.
    let name_end = (at..bytes.len())
        .find(|&i| !is_ident_byte(bytes[i]))
        .unwrap_or(bytes.len());
    if name_end > at {
        let p = skip_ws(src, name_end);
        if bytes.get(p) == Some(&b'(') {
            return Some((at, group_end(src, p)?));
        }
        // A bare op name (`Dense`).
        return Some((at, name_end));
    }
    call_holding(src, at)
}

/// The innermost call whose parentheses hold `at`.
fn call_holding(src: &str, at: usize) -> Option<(usize, usize)> {
    let bytes = src.as_bytes();
    let mut depth = 0i32;
    let mut i = at;
    while i > 0 {
        i -= 1;
        match bytes[i] {
            b')' | b']' | b'}' => depth += 1,
            b'[' | b'{' if depth == 0 => return None,
            b'(' | b'[' | b'{' => depth -= 1,
            _ => {}
        }
        if bytes[i] == b'(' && depth < 0 {
            let name = ident_before(src, i);
            if name < i {
                return Some((name, group_end(src, i)?));
            }
            depth = 0;
        }
    }
    None
}

/// The top-level arguments of the call `(start, end)`: byte ranges.
fn arguments(src: &str, call: (usize, usize)) -> Vec<(usize, usize)> {
    let open = match src[call.0..call.1].find('(') {
        Some(o) => call.0 + o,
        None => return Vec::new(),
    };
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = open + 1;
    for (i, &b) in bytes.iter().enumerate().take(call.1 - 1).skip(open + 1) {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                out.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    if !src[start..call.1 - 1].trim().is_empty() {
        out.push((start, call.1 - 1));
    }
    out
}

fn key_of(arg: &str) -> Option<&str> {
    let (k, v) = arg.split_once('=')?;
    let k = k.trim();
    (!v.starts_with('=') && !k.is_empty() && k.bytes().all(is_ident_byte)).then_some(k)
}

/// `S` with a `..` argument replaced by the call's own remaining arguments.
fn fill_rest(src: &str, call: (usize, usize), snippet: &str) -> String {
    let Some(open) = snippet.find('(') else {
        return snippet.to_string();
    };
    let inner = &snippet[open + 1..snippet.len().saturating_sub(1)];
    let given: Vec<&str> = inner.split(',').map(str::trim).collect();
    if given.last() != Some(&"..") {
        return snippet.to_string();
    }
    let own: Vec<String> = arguments(src, call)
        .iter()
        .map(|&(a, b)| src[a..b].trim().to_string())
        .collect();
    let kept = given.len() - 1;
    let mut args: Vec<String> = given[..kept].iter().map(|s| s.to_string()).collect();
    args.extend(own.into_iter().skip(kept));
    format!("{}({})", &snippet[..open], args.join(", "))
}

/// The backticked snippets of a help, each with the text before it.
fn snippets(help: &str) -> Vec<(&str, &str, &str)> {
    let mut out = Vec::new();
    let mut rest = 0;
    while let Some(a) = help[rest..].find('`').map(|a| rest + a) {
        let Some(b) = help[a + 1..].find('`').map(|b| a + 1 + b) else {
            break;
        };
        out.push((&help[..a], &help[a + 1..b], &help[b + 1..]));
        rest = b + 1;
    }
    out
}

/// Where `name:` is written nearest `near`.
fn layer_near(src: &str, name: &str, near: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    src.match_indices(name)
        .filter(|&(i, _)| {
            let after = skip_ws(src, i + name.len());
            (i == 0 || !is_ident_byte(bytes[i - 1]))
                && bytes.get(after) == Some(&b':')
                && bytes.get(after + 1) != Some(&b':')
        })
        .map(|(i, _)| i)
        .min_by_key(|&i| i.abs_diff(near))
}

fn layer_at(src: &str, name: &str) -> Option<usize> {
    layer_near(src, name, 0)
}

/// Sets `key = value` in a call: replaces the argument, or adds it.
fn set_argument(
    src: &str,
    call: (usize, usize),
    caret: usize,
    arg: &str,
) -> Option<((usize, usize), String)> {
    let key = key_of(arg)?;
    let args = arguments(src, call);
    // A positional argument under the caret is named.
    if let Some(&(a, b)) = args
        .iter()
        .find(|&&(a, b)| a <= caret && caret <= b && key_of(&src[a..b]).is_none())
    {
        let lead = src[a..b].len() - src[a..b].trim_start().len();
        return Some(((a + lead, b), arg.to_string()));
    }
    if let Some(&(a, b)) = args.iter().find(|&&(a, b)| key_of(&src[a..b]) == Some(key)) {
        let lead = src[a..b].len() - src[a..b].trim_start().len();
        return Some(((a + lead, b), arg.to_string()));
    }
    if !src[call.0..call.1].contains('(') {
        return Some(((call.1, call.1), format!("({arg})")));
    }
    let close = call.1 - 1;
    let text = if args.is_empty() {
        arg.to_string()
    } else {
        format!(", {arg}")
    };
    Some(((close, close), text))
}

/// The edit a help offers: the snippet after `write`, or else a first
/// snippet that is not the subject of a statement (`X` takes ..).
fn offered(help: &str) -> Option<(&str, String)> {
    let all = snippets(help);
    if let Some(&(before, s, _)) = all
        .iter()
        .find(|(before, _, _)| before.trim_end().ends_with("write"))
    {
        return Some((before, s.to_string()));
    }
    let &(before, s, after) = all.first()?;
    let statement = [
        " takes", " is ", " holds", "'s ", " gives", " names", " would",
    ];
    if statement.iter().any(|w| after.starts_with(w)) {
        return None;
    }
    Some((before, s.to_string()))
}

/// The edit a help offers, as (replaced byte range, new text).
fn edit(src: &str, err: &Error) -> Option<((usize, usize), String)> {
    let help = err.help.iter().find(|h| offered(h).is_some())?;
    // `conv1` with `padding = 1` gives ..: set the argument of that layer.
    let all = snippets(help);
    if let [(_, layer, with), (_, arg, _), ..] = all.as_slice() {
        if with.trim() == "with" && key_of(arg).is_some() {
            let at = layer_at(src, layer)?;
            let item = skip_ws(src, skip_ws(src, at + layer.len()) + 1);
            let call = call_around(src, item)?;
            return set_argument(src, call, usize::MAX, arg);
        }
    }
    let (before, snippet) = offered(help)?;
    let caret = (offset(src, err.start), offset(src, err.end));
    // `A` for `B`: the `B` written nearest the caret becomes `A`.
    if let Some(&(_, _, after)) = all.iter().find(|(_, s, _)| *s == snippet) {
        if let Some(old) = after
            .strip_prefix(" for `")
            .and_then(|r| r.split_once('`'))
            .map(|(o, _)| o)
        {
            let bytes = src.as_bytes();
            let at = src
                .match_indices(old)
                .map(|(i, _)| i)
                .filter(|&i| {
                    (i == 0 || !is_ident_byte(bytes[i - 1]))
                        && !is_ident_byte(*bytes.get(i + old.len()).unwrap_or(&b' '))
                })
                .min_by_key(|&i| i.abs_diff(caret.0))?;
            return Some(((at, at + old.len()), snippet));
        }
    }
    let bytes = src.as_bytes();

    if before.trim_end().ends_with("remove") {
        // Text written verbatim near the caret (`flatten ->`).
        if !snippet.contains('=') && (snippet.contains(' ') || !snippet.bytes().all(is_ident_byte))
        {
            // The nearest at or before the caret (which may cover only
            // the snippet's first token).
            let limit = (caret.0 + snippet.len()).min(src.len());
            let at = src[..limit]
                .rmatch_indices(snippet.as_str())
                .next()
                .or_else(|| src.match_indices(snippet.as_str()).next())?
                .0;
            let end = skip_ws(src, at + snippet.len());
            return Some(((at, end), String::new()));
        }
        let call = call_holding(src, caret.0)?;
        let args = arguments(src, call);
        let key = key_of(&snippet).unwrap_or(&snippet);
        let matches = |&(a, b): &(usize, usize)| {
            let text = src[a..b].trim();
            text == snippet || key_of(text) == Some(key)
        };
        let idx = args
            .iter()
            .position(|r| r.0 <= caret.0 && caret.0 <= r.1 && matches(r))
            .or_else(|| args.iter().position(matches))?;
        let (a, b) = args[idx];
        // Take the comma before it (or after it, for the first).
        let range = if idx > 0 {
            (args[idx - 1].1, b)
        } else if args.len() > 1 {
            (a, args[1].0)
        } else {
            (a, b)
        };
        return Some((range, String::new()));
    }
    // `name: ..` where the name is written in the source.
    if let Some((name, _)) = snippet.split_once(':') {
        let name = name.trim();
        if !name.is_empty() && name.bytes().all(is_ident_byte) && !snippet.starts_with(':') {
            let found = layer_near(src, name, caret.0);
            if let Some(at) = found {
                let colon = skip_ws(src, at + name.len());
                let item = skip_ws(src, colon + 1);
                let written = bytes
                    .get(item)
                    .is_some_and(|&b| b == b'[' || is_ident_byte(b));
                let end = if !written {
                    // `x: )`: nothing written after the colon.
                    colon + 1
                } else if bytes.get(item) == Some(&b'[') {
                    let mut e = group_end(src, item)?;
                    // A dtype after the shape (`u32`).
                    let d = skip_ws(src, e);
                    let w = (d..bytes.len())
                        .find(|&i| !is_ident_byte(bytes[i]))
                        .unwrap_or(bytes.len());
                    if w > d && matches!(&src[d..w], "u32" | "i64" | "f32") {
                        e = w;
                    }
                    e
                } else {
                    call_around(src, item)?.1
                };
                let (_, rest) = snippet.split_once(':').unwrap();
                let call = call_around(src, item).unwrap_or((item, end));
                let rest = fill_rest(src, call, rest.trim());
                return Some(((at, end), format!("{name}: {rest}")));
            }
        }
    }
    // `key = value`: set an argument of the call at the caret.
    if key_of(&snippet).is_some()
        && (!snippet.contains("->") && !snippet.contains('(')
            || snippet.find('=') < snippet.find('('))
    {
        let call = call_holding(src, caret.0).or_else(|| call_around(src, caret.0))?;
        return set_argument(src, call, caret.0, &snippet);
    }
    // `-> [..]` and `: [..]`: the shape under the caret.
    if let Some(shape) = snippet
        .strip_prefix("->")
        .or_else(|| snippet.strip_prefix(':'))
    {
        let under = &src[caret.0..caret.1];
        let text = if under.starts_with("->") || under.starts_with(':') {
            snippet.clone()
        } else {
            shape.trim().to_string()
        };
        return Some((caret, text));
    }
    // `Op(..)`: the call at the caret.
    let name_len = snippet.bytes().take_while(|&b| is_ident_byte(b)).count();
    let is_call = snippet.as_bytes().get(name_len) == Some(&b'(');
    if name_len > 0 && (snippet.as_bytes()[0].is_ascii_uppercase() || is_call) {
        // The call of that op under the caret, else the call at the caret.
        let op = &snippet[..name_len];
        let same = src[caret.0..caret.1]
            .match_indices(op)
            .map(|(i, _)| caret.0 + i)
            .find(|&i| {
                !is_ident_byte(bytes[i.saturating_sub(1)])
                    && !is_ident_byte(*bytes.get(i + op.len()).unwrap_or(&b' '))
            });
        let holding = call_holding(src, caret.0).filter(|c| src[c.0..].starts_with(op));
        let call = match (same, holding) {
            (Some(i), _) => call_around(src, i)?,
            (None, Some(c)) => c,
            (None, None) => call_around(src, caret.0)?,
        };
        if call.1 >= caret.1 {
            return Some((call, fill_rest(src, call, &snippet)));
        }
    }
    Some((caret, snippet))
}

#[test]
fn each_help_edit_fixes_its_error() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/ui");
    let mut files = Vec::new();
    cases(&root, &mut files);
    files.sort();
    assert!(files.len() >= 100, "found only {} UI cases", files.len());

    let mut with_edit = 0;
    let mut failures = Vec::new();
    let mut without = Vec::new();
    for file in &files {
        let name = file
            .strip_prefix(&root)
            .unwrap()
            .with_extension("")
            .display()
            .to_string();
        let src = std::fs::read_to_string(file).unwrap();
        let Some(errs) = errors(&src) else {
            failures.push(format!("{name}: not Rust tokens"));
            continue;
        };
        let Some(first) = errs.first() else {
            if RUSTC_ERROR.iter().any(|(n, _)| *n == name) {
                continue;
            }
            failures.push(format!("{name}: expands without an error"));
            continue;
        };
        let exempt = NO_EDIT.iter().any(|(n, _)| *n == name);
        let Some((range, text)) = edit(&src, first) else {
            if !exempt {
                without.push(format!("{name}: {}", first.first_line));
            }
            continue;
        };
        if exempt {
            failures.push(format!("{name}: listed in NO_EDIT but offers an edit"));
        }
        let mut fixed = src.clone();
        fixed.replace_range(range.0..range.1, &text);
        let after = errors(&fixed).unwrap_or_default();
        // Gone: one fewer error says it (a mistake made twice is fixed
        // once per edit).
        let count = |errs: &[Error]| {
            errs.iter()
                .filter(|e| e.first_line == first.first_line)
                .count()
        };
        if count(&after) >= count(&errs) {
            failures.push(format!(
                "{name}: `{}` -> `{text}` leaves `{}`",
                &src[range.0..range.1],
                first.first_line
            ));
        } else {
            with_edit += 1;
        }
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&root)
                .unwrap()
                .with_extension("")
                .display()
                .to_string()
        })
        .collect();
    for (n, _) in NO_EDIT {
        if !names.iter().any(|m| m == n) {
            failures.push(format!("{n}: listed in NO_EDIT but no such case"));
        }
    }
    let total = files.len();
    eprintln!(
        "{with_edit} of {total} cases fixed by their help's edit; {} without an edit, {} failed",
        without.len(),
        failures.len()
    );
    for w in &without {
        eprintln!("no edit: {w}");
    }
    assert!(
        without.is_empty(),
        "{} cases offer no edit and are not listed in NO_EDIT:\n{}",
        without.len(),
        without.join("\n")
    );
    for f in &failures {
        eprintln!("FAILED: {f}");
    }
    assert!(
        failures.is_empty(),
        "{} help edits do not work",
        failures.len()
    );
    assert!(
        with_edit * 100 >= total * MIN_PERCENT,
        "only {with_edit} of {total} cases carry a working edit"
    );
}
