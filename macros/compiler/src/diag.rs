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

/// One compile error: a message and the tokens it points at.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub span: SpanRange,
    pub message: String,
}

impl Diagnostic {
    pub fn to_syn(&self) -> syn::Error {
        syn::Error::new_spanned(self.span, &self.message)
    }
}

impl From<syn::Error> for Diagnostic {
    fn from(e: syn::Error) -> Self {
        let span = e.span();
        Self {
            span: SpanRange::single(span),
            message: e.to_string(),
        }
    }
}

/// The error context shared by every pass (as serde_derive's `Ctxt`).
#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Vec<Diagnostic>>,
    next_id: Cell<usize>,
}

impl Ctxt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error (once: the same message at the same tokens, as the
    /// copies of a `repeat` or the uses of a block give, is one error).
    pub fn error(&self, span: SpanRange, message: impl Into<String>) {
        self.error_once(Diagnostic {
            span,
            message: message.into(),
        });
    }

    pub fn syn_error(&self, e: syn::Error) {
        for e in e {
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
        let mut errors = self.errors.borrow_mut();
        let same = |e: &Diagnostic| {
            e.message == d.message
                && format!("{:?}", e.span.start) == format!("{:?}", d.span.start)
                && format!("{:?}", e.span.end) == format!("{:?}", d.span.end)
        };
        if !errors.iter().any(same) {
            errors.push(d);
        }
    }

    pub fn error_count(&self) -> usize {
        self.errors.borrow().len()
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
        assert_eq!(
            did_you_mean("maxpool", ["max_pool", "avg_pool"]),
            Some("max_pool")
        );
        assert_eq!(did_you_mean("lstm", ["relu", "tanh"]), None);
    }
}
