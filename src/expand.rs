//! What the `network!` invocations of a Rust source file expand to,
//! pretty-printed: snapshot-test the code generated for your own networks
//! from their real source, not from a copy kept in a string.
//!
//! ```no_run
//! # fn main() -> Result<(), netdsl::expand::ExpandError> {
//! let code = netdsl::expand::expand_file("src/model.rs")?;
//! // insta::assert_snapshot!(code);
//!
//! // Without the text constants (`SUMMARY`, `FUSIONS`, `GRAPH_*`): the
//! // summary and the fusions stay in the struct's documentation, once.
//! let options = netdsl::expand::ExpandOptions::default().without_constants();
//! let code = netdsl::expand::expand_file_with("src/model.rs", options)?;
//! # Ok(()) }
//! ```
//!
//! Texts print as their lines (raw string literals), so a change in one
//! layer is a change in one line of the snapshot.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use syn::visit::Visit;

/// Why a file could not be expanded.
#[derive(Debug, thiserror::Error)]
pub enum ExpandError {
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid Rust.
    #[error("`{what}` is not valid Rust: {message}")]
    Parse { what: String, message: String },
    /// The file holds no `network!` invocation.
    #[error("`{what}` holds no `network!` invocation")]
    NoInvocation { what: String },
    /// Invocation `index` (from 1, in source order) does not compile; every
    /// error of it, one `error: ..` block each.
    #[error("`network!` invocation {index} in `{what}` does not compile:\n{errors}")]
    Compile {
        what: String,
        index: usize,
        errors: String,
    },
}

/// What an expansion leaves in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpandOptions {
    /// The text constants `SUMMARY`, `FUSIONS`, `GRAPH_MERMAID` and
    /// `GRAPH_DOT` (default: in). The summary and the fusions are in the
    /// struct's documentation too, so without the constants they appear
    /// once.
    pub constants: bool,
}

impl Default for ExpandOptions {
    fn default() -> Self {
        Self { constants: true }
    }
}

impl ExpandOptions {
    /// Leaves the text constants out.
    pub fn without_constants(self) -> Self {
        Self { constants: false }
    }
}

/// The `network!` invocations of a file, each expanded and pretty-printed
/// (as `cargo expand` would show the macro's output), in source order,
/// each under a `// network! invocation N of M` line. Invocations inside
/// modules and function bodies count; the macro may be named `network!`
/// or by a path ending in it (`netdsl::network!`).
pub fn expand_file(path: impl AsRef<Path>) -> Result<String, ExpandError> {
    expand_file_with(path, ExpandOptions::default())
}

/// [`expand_file`], leaving out what `options` say.
pub fn expand_file_with(
    path: impl AsRef<Path>,
    options: ExpandOptions,
) -> Result<String, ExpandError> {
    let path = path.as_ref();
    let source = std::fs::read_to_string(path).map_err(|source| ExpandError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    expand_source_named(&source, &path.display().to_string(), options)
}

/// [`expand_file`] on source text.
pub fn expand_source(source: &str) -> Result<String, ExpandError> {
    expand_source_with(source, ExpandOptions::default())
}

/// [`expand_source`], leaving out what `options` say.
pub fn expand_source_with(source: &str, options: ExpandOptions) -> Result<String, ExpandError> {
    expand_source_named(source, "the source", options)
}

fn expand_source_named(
    source: &str,
    what: &str,
    options: ExpandOptions,
) -> Result<String, ExpandError> {
    let file: syn::File = syn::parse_file(source).map_err(|e| ExpandError::Parse {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    let mut found = Invocations(Vec::new());
    found.visit_file(&file);
    let bodies = found.0;
    if bodies.is_empty() {
        return Err(ExpandError::NoInvocation {
            what: what.to_string(),
        });
    }
    let mut out = String::new();
    for (i, tokens) in bodies.iter().enumerate() {
        // Through text, so the compiler sees the tokens as the macro would.
        let tokens = proc_macro2::TokenStream::from_str(&tokens.to_string()).map_err(|e| {
            ExpandError::Parse {
                what: what.to_string(),
                message: e.to_string(),
            }
        })?;
        let pretty = netdsl_compiler::PrettyOptions {
            constants: options.constants,
        };
        let code = netdsl_compiler::expand_pretty_with(tokens, pretty).map_err(|d| {
            ExpandError::Compile {
                what: what.to_string(),
                index: i + 1,
                errors: d.to_string(),
            }
        })?;
        if i > 0 {
            out.push('\n');
        }
        out += &format!(
            "// network! invocation {} of {}\n{code}",
            i + 1,
            bodies.len()
        );
    }
    Ok(out)
}

/// The token bodies of every `network! { .. }` in a file.
struct Invocations(Vec<proc_macro2::TokenStream>);

impl<'ast> Visit<'ast> for Invocations {
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        if m.path.segments.last().is_some_and(|s| s.ident == "network") {
            self.0.push(m.tokens.clone());
        }
        syn::visit::visit_macro(self, m);
    }
}
