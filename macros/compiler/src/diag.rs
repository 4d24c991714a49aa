//! Diagnostics: every error of one invocation is collected in a [`Ctxt`] and
//! reported together, each at the span of the tokens at fault.

use std::cell::{Cell, RefCell};

use proc_macro2::{Ident, Span, TokenStream};
use quote::ToTokens;

/// The first and last token of a piece of user input. Stable proc macros
/// cannot join spans, but a compile error spanned over two tokens covers
/// everything between them, so this is what errors point at.
#[derive(Clone, Copy, Debug)]
pub struct SpanRange {
    pub start: Span,
    pub end: Span,
}

impl SpanRange {
    pub fn single(span: Span) -> Self {
        Self {
            start: span,
            end: span,
        }
    }

    pub fn to(self, other: SpanRange) -> Self {
        Self {
            start: self.start,
            end: other.end,
        }
    }

    /// The range of all tokens in `tokens` (call site when empty).
    pub fn of(tokens: &TokenStream) -> Self {
        let mut iter = tokens.clone().into_iter();
        let Some(first) = iter.next() else {
            return Self::single(Span::call_site());
        };
        let last = iter.last().unwrap_or_else(|| first.clone());
        Self {
            start: first.span(),
            end: last.span(),
        }
    }
}

impl ToTokens for SpanRange {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        // `syn::Error::new_spanned` takes the first and the last token's span.
        tokens.extend([
            proc_macro2::TokenTree::Ident(Ident::new("start", self.start)),
            proc_macro2::TokenTree::Ident(Ident::new("end", self.end)),
        ]);
    }
}

/// One compile error: what is wrong, the tokens it points at, and the
/// lines under it. Rendered to text in one place ([`Diagnostic::render`]):
/// the message, then each `help:` line (the edit that fixes it), then each
/// `note:` line (where it happened: the block use, the input's shape).
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub span: SpanRange,
    /// What is wrong: the first line, and the lines that belong to it (the
    /// arithmetic of each step).
    pub message: String,
    pub help: Vec<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// A diagnostic from a rule's text: the lines up to the first `help:`
    /// or `note:` line are the message; each such line starts a help or a
    /// note, and the lines after it (`      or ..`) continue it. Rules may
    /// write their help inline or add it with [`Diagnostic::with_help`]:
    /// either way it is held in `help`, and rendering gives the same text.
    pub fn new(span: SpanRange, message: impl Into<String>) -> Self {
        let text: String = message.into();
        let mut d = Self {
            span,
            message: String::new(),
            help: Vec::new(),
            notes: Vec::new(),
        };
        for (i, line) in text.split('\n').enumerate() {
            if let Some(h) = line.strip_prefix("help: ") {
                d.help.push(h.to_string());
            } else if let Some(n) = line.strip_prefix("note: ") {
                d.notes.push(n.to_string());
            } else {
                // A line continues what came before it: the latest note, or
                // else the latest help, or else the message.
                let slot = match (d.notes.last_mut(), d.help.last_mut()) {
                    (Some(n), _) => n,
                    (None, Some(h)) => h,
                    (None, None) => &mut d.message,
                };
                if i > 0 {
                    slot.push('\n');
                }
                slot.push_str(line);
            }
        }
        d
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The text `compile_error!` shows.
    pub fn render(&self) -> String {
        let mut out = self.message.clone();
        for h in &self.help {
            out += &format!("\nhelp: {h}");
        }
        for n in &self.notes {
            out += &format!("\nnote: {n}");
        }
        out
    }

    pub fn to_syn(&self) -> syn::Error {
        syn::Error::new_spanned(self.span, self.render())
    }
}

impl From<syn::Error> for Diagnostic {
    fn from(e: syn::Error) -> Self {
        Self::new(SpanRange::single(e.span()), e.to_string())
    }
}

/// The error context shared by every pass (as serde_derive's `Ctxt`).
#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Vec<Diagnostic>>,
    next_id: Cell<usize>,
    /// A parse error was recovered from inside a group (see
    /// `parse::recover`).
    pub recovered: Cell<bool>,
    /// Errors raised, counting those recorded once for several places:
    /// what tells a pass that its input had an error.
    raised: Cell<usize>,
}

impl Ctxt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error (once: the same message at the same tokens, as the
    /// copies of a `repeat` or the uses of a block give, is one error).
    pub fn error(&self, span: SpanRange, message: impl Into<String>) {
        self.error_once(Diagnostic::new(span, message));
    }

    /// Records a diagnostic built with its help and notes (once, as
    /// [`Ctxt::error`]).
    pub fn emit(&self, d: Diagnostic) {
        self.error_once(d);
    }

    pub fn syn_error(&self, e: syn::Error) {
        for e in e {
            self.raised.set(self.raised.get() + 1);
            self.errors.borrow_mut().push(e.into());
        }
    }

    /// A number unique within this invocation (expression ids).
    pub fn next_id(&self) -> usize {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Records an error unless the same message is already recorded at the
    /// same place (a block used several times with the same mistake).
    pub fn error_once(&self, d: Diagnostic) {
        self.raised.set(self.raised.get() + 1);
        let mut errors = self.errors.borrow_mut();
        let same = |e: &Diagnostic| {
            e.render() == d.render()
                && format!("{:?}", e.span.start) == format!("{:?}", d.span.start)
                && format!("{:?}", e.span.end) == format!("{:?}", d.span.end)
        };
        if !errors.iter().any(same) {
            errors.push(d);
        }
    }

    /// Errors raised so far, each time (an error already recorded, raised
    /// again for another network, counts again): compare two counts to
    /// learn whether a pass met an error.
    pub fn error_count(&self) -> usize {
        self.raised.get()
    }

    pub fn into_errors(self) -> Vec<Diagnostic> {
        self.errors.into_inner()
    }
}

/// Edit distance counting insertions, deletions, substitutions and swaps of
/// two neighbouring letters (optimal string alignment), case-insensitive.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate to `name`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let candidates: Vec<&'a str> = candidates.into_iter().collect();
    // Only the case differs: the spelling of the same style wins, so `Relu`
    // (a module name, as PyTorch's classes are written) gets `ReLU`, and
    // `reLU` gets `relu`.
    let upper = |s: &str| s.chars().next().is_some_and(char::is_uppercase);
    let same_letters = candidates
        .iter()
        .filter(|c| c.eq_ignore_ascii_case(name) && **c != name);
    if let Some(c) = same_letters
        .clone()
        .find(|c| upper(c) == upper(name))
        .or_else(|| same_letters.clone().next())
    {
        return Some(c);
    }
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1))
        // Ties go to the candidate written in the same case (`relu`, not `ReLU`).
        .min_by_key(|(d, c)| {
            (
                *d,
                c.chars().zip(name.chars()).filter(|(a, b)| a != b).count(),
            )
        })
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_common_typos() {
        assert_eq!(edit_distance("rleu", "relu"), 1);
        assert_eq!(edit_distance("Conv2dd", "Conv2d"), 1);
        assert_eq!(did_you_mean("rleu", ["ReLU", "relu", "tanh"]), Some("relu"));
        // Only the case wrong: the spelling of the same style.
        assert_eq!(did_you_mean("Relu", ["relu", "ReLU"]), Some("ReLU"));
        assert_eq!(did_you_mean("reLU", ["ReLU", "relu"]), Some("relu"));
        assert_eq!(
            did_you_mean("MaxPool2D", ["max_pool", "MaxPool2d"]),
            Some("MaxPool2d")
        );
        assert_eq!(
            did_you_mean("maxpool", ["max_pool", "avg_pool"]),
            Some("max_pool")
        );
        assert_eq!(did_you_mean("lstm", ["relu", "tanh"]), None);
    }

    /// A rule's text is held as fields, and renders back unchanged.
    #[test]
    fn text_is_held_as_fields() {
        let span = SpanRange::single(Span::call_site());
        let text = "`conv2` gives [B, 16, 4, 4]\n  conv1: H = 24\nhelp: `padding = 2`\n      or assert it\nhelp: another\nnote: in `layer1`";
        let d = Diagnostic::new(span, text);
        assert_eq!(d.message, "`conv2` gives [B, 16, 4, 4]\n  conv1: H = 24");
        assert_eq!(d.help, ["`padding = 2`\n      or assert it", "another"]);
        assert_eq!(d.notes, ["in `layer1`"]);
        assert_eq!(d.render(), text);
        let plain = Diagnostic::new(span, "unknown op `Relu`").with_help("did you mean `ReLU`?");
        assert_eq!(
            plain.render(),
            "unknown op `Relu`\nhelp: did you mean `ReLU`?"
        );
    }
}
