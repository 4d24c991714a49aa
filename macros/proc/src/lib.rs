//! The `network!` procedural macro. All the work is in `netdsl-compiler`;
//! this crate only hands it the tokens. Use it through the `netdsl` crate.

use proc_macro::TokenStream;

/// Declares neural networks, checks every shape at compile time, and
/// generates a struct per network that runs on candle. See the `netdsl`
/// crate's documentation and `docs/reference.md` for the language.
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    netdsl_compiler::expand_or_errors(input.into()).into()
}
