//! Blocks shared between invocations.
//!
//! A proc macro sees only its own tokens, so a block defined in one
//! `network!` reaches another through the compiler, by hand-over:
//!
//! - Next to its struct, every block with a visibility (`pub`,
//!   `pub(crate)`, ..) emits a `macro_rules!` holding its tokens and those of
//!   every block it uses, re-exported under the block's own name in the
//!   macro namespace (the struct holds the name in the type namespace), so
//!   `crate::blocks::BasicBlock` names both.
//! - An invocation that starts with `use crate::blocks::BasicBlock;` expands
//!   to `crate::blocks::BasicBlock! { <the rest of the invocation> }`; that
//!   macro expands to `::netdsl::network! { @import { <the blocks> } <the
//!   rest> }`, and the next `use`, if any, is handed over the same way.
//! - The imported blocks are parsed as if written here (their tokens keep
//!   their spans, so a note inside one points at its definition) and marked
//!   `imported`: their definitions were checked where they were written;
//!   here only their uses are, with the same messages and carets.
//!
//! `macro_rules!` are re-exported within their crate only (Rust allows no
//! more for a macro a macro emitted), so a `pub block` is shared across the
//! modules of one crate.

use proc_macro2::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::{format_ident, quote};
use syn::{UseTree, Visibility};

use crate::ast::BlockDef;

/// The macro-call form of an invocation with a top-level `use`: `path! {
/// rest }` for the last path of the last `use`, the rest keeping every other
/// `use`. `None` without one; an error for a `use` that is not one plain
/// path per block. Each block's macro puts its `@import` in front, so the
/// last is handed over first and the blocks arrive in the order written.
pub fn hand_over(input: &TokenStream) -> Option<Result<TokenStream, syn::Error>> {
    let tokens: Vec<TokenTree> = input.clone().into_iter().collect();
    let start = tokens
        .iter()
        .rposition(|t| matches!(t, TokenTree::Ident(i) if i == "use"))?;
    let end = tokens[start..]
        .iter()
        .position(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ';'))
        .map(|k| start + k);
    let Some(end) = end else {
        return Some(Err(syn::Error::new(
            tokens[start].span(),
            "expected `;` after the imported block's path\n\
             help: write `use crate::blocks::Name;`",
        )));
    };
    let item: TokenStream = tokens[start..=end].iter().cloned().collect();
    let item: syn::ItemUse = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => return Some(Err(e)),
    };
    let mut paths = Vec::new();
    if let Err(e) = flatten(&item.tree, &mut Vec::new(), &mut paths) {
        return Some(Err(e));
    }
    let leading = item.leading_colon.map(|c| quote!(#c));
    let mut rest: TokenStream = tokens[..start].iter().cloned().collect();
    let (last, others) = paths.split_last()?;
    for path in others {
        rest.extend(quote!(use #leading #(#path)::*;));
    }
    rest.extend(tokens[end + 1..].iter().cloned());
    Some(Ok(quote!(#leading #(#last)::* ! { #rest })))
}

/// The paths a `use` tree names, each a list of segments.
fn flatten(tree: &UseTree, prefix: &mut Vec<Ident>, out: &mut Vec<Vec<Ident>>) -> syn::Result<()> {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.clone());
            flatten(&p.tree, prefix, out)?;
            prefix.pop();
        }
        UseTree::Name(n) => {
            let mut path = prefix.clone();
            path.push(n.ident.clone());
            out.push(path);
        }
        UseTree::Group(g) => {
            for t in &g.items {
                flatten(t, prefix, out)?;
            }
        }
        UseTree::Rename(r) => {
            return Err(syn::Error::new_spanned(
                r,
                format!(
                    "an imported block keeps its name (its struct and its uses are named by it)\n\
                     help: write `{}`, and `{}(..)` where it is used",
                    r.ident, r.ident
                ),
            ))
        }
        UseTree::Glob(g) => {
            return Err(syn::Error::new(
                g.star_token.spans[0],
                "blocks are imported by name\nhelp: name each block, e.g. `use crate::blocks::{BasicBlock, Bottleneck};`",
            ))
        }
    }
    Ok(())
}

/// The macro name a block's tokens are handed over under.
fn macro_name(name: &Ident) -> Ident {
    format_ident!("__netdsl_block_{}", name)
}

/// The blocks `def` uses, directly or through others, in definition order.
fn needed(defs: &[BlockDef], d: usize) -> Vec<usize> {
    let mut need = vec![false; defs.len()];
    let mut stack = vec![d];
    while let Some(b) = stack.pop() {
        let Some(body) = &defs[b].body else { continue };
        let mut visit = |layer: &crate::ast::Layer| {
            if let Some(u) = defs.iter().position(|x| x.name == layer.op) {
                if !need[u] && u != d {
                    need[u] = true;
                    stack.push(u);
                }
            }
        };
        for e in body.exprs() {
            crate::ast::visit_layers(e, &mut visit);
        }
    }
    (0..defs.len()).filter(|&u| need[u]).collect()
}

/// For each block defined here with a visibility: the macro that hands its
/// tokens (and those of the blocks it uses) to an importing invocation,
/// re-exported under the block's name.
pub fn export_macros(defs: &[BlockDef]) -> TokenStream {
    let mut out = TokenStream::new();
    for (d, def) in defs.iter().enumerate() {
        if def.imported || matches!(def.vis, Visibility::Inherited) {
            continue;
        }
        // Two definitions of one name are an error reported elsewhere.
        if defs[..d].iter().any(|o| o.name == def.name) {
            continue;
        }
        let mut blocks = TokenStream::new();
        for u in needed(defs, d) {
            blocks.extend(defs[u].tokens.clone());
        }
        blocks.extend(def.tokens.clone());
        let name = &def.name;
        let hidden = macro_name(name);
        // `pub` reaches as far as a macro's re-export can: the crate.
        let vis = match &def.vis {
            Visibility::Public(_) => quote!(pub(crate)),
            v => quote!(#v),
        };
        let dollar = TokenTree::Punct(Punct::new('$', Spacing::Alone));
        let rest = Ident::new("rest", Span::call_site());
        let pattern = quote!((#dollar(#dollar #rest:tt)*));
        let expansion = quote!(#dollar(#dollar #rest)*);
        let import = TokenTree::Group(Group::new(Delimiter::Brace, blocks));
        out.extend(quote! {
            #[doc(hidden)]
            #[allow(unused_macros)]
            macro_rules! #hidden {
                #pattern => { ::netdsl::network! { @import #import #expansion } };
            }
            #[doc(hidden)]
            #[allow(unused_imports)]
            #vis use #hidden as #name;
        });
    }
    out
}

/// Imported blocks that were also defined or imported before, token for
/// token (two imports sharing a block they both use): kept once.
pub fn dedup(defs: &mut Vec<BlockDef>) {
    let key = |d: &BlockDef| (d.name.to_string(), d.tokens.to_string());
    let keys: Vec<_> = defs.iter().map(key).collect();
    let mut keep = vec![true; defs.len()];
    for i in 0..defs.len() {
        // Another copy: one defined here, or an earlier import.
        keep[i] = !defs[i].imported
            || !(0..defs.len())
                .any(|j| j != i && keys[j] == keys[i] && (!defs[j].imported || j < i));
    }
    let mut keep = keep.into_iter();
    defs.retain(|_| keep.next().unwrap_or(true));
}
