//! A block built alone, outside any network: `BasicBlock::new(source, C,
//! out, stride)`, `new_seeded`, `from_tensors`, `manifest` and
//! `forward_eval`, so that one block can be built and tested by itself.
//!
//! A block's code is compiled, and its shapes checked, for its uses in the
//! invocation; so the constructor takes every declared parameter and the
//! input sizes the code names (`C` in `if C != out`) or the weights are
//! made for (a dim of some weight at every use), input sizes first, and
//! builds
//! the block as the first use with those values is built: the same code
//! path, branch flags and folds, with the parameters under the block's own
//! state_dict names (`conv1.weight`, not `layer2.0.conv1.weight`). Values
//! no use has are an error naming the compiled ones. Where two uses agree
//! on those names but not on their parameters' shapes or their code's named
//! numbers, the next name that tells them apart is added.

use std::collections::HashSet;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;

use super::named::NumTy;
use crate::ast::{BlockDef, ParamKind};
use crate::lower::{NetIr, Num};

fn value(ir: &NetIr, name: &str) -> Option<Num> {
    ir.env.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

fn show(n: Num) -> String {
    match n {
        Num::Int(v) => v.to_string(),
        Num::Float(v) => format!("{v:?}"),
        Num::Bool(v) => v.to_string(),
    }
}

/// The type every member's value of `name` fits, the declared one for a
/// parameter; `None` where members disagree in kind.
fn arg_ty(def: &BlockDef, irs: &[&NetIr], name: &str) -> Option<NumTy> {
    if let Some(p) = def.params.iter().find(|p| p.name == name) {
        return match p.kind {
            ParamKind::Usize => Some(NumTy::Usize),
            ParamKind::F64 => Some(NumTy::F64),
            ParamKind::Bool => Some(NumTy::Bool),
            ParamKind::Tensor => None,
        };
    }
    let nums: Vec<Num> = irs
        .iter()
        .map(|ir| value(ir, name))
        .collect::<Option<_>>()?;
    NumTy::of(&nums)
}

/// A member's parameters as the block alone names them, with shapes.
fn own_params(ir: &NetIr) -> Vec<(String, &crate::lower::ParamIr)> {
    ir.fields
        .iter()
        .flat_map(|f| &f.params)
        .map(|p| {
            let own = p.name.strip_prefix(&ir.prefix).unwrap_or(&p.name);
            (own.to_string(), p)
        })
        .collect()
}

fn same_params(a: &NetIr, b: &NetIr) -> bool {
    let (a, b) = (own_params(a), own_params(b));
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|((na, pa), (nb, pb))| na == nb && pa.shape == pb.shape)
}

/// The names the constructor takes, in its order.
fn key_names(def: &BlockDef, irs: &[&NetIr], named: &HashSet<String>) -> Vec<String> {
    let inputs = def.input_shape.symbols();
    let params = def
        .params
        .iter()
        .filter(|p| p.kind != ParamKind::Tensor)
        .map(|p| p.name.to_string());
    let mut order: Vec<String> = Vec::new();
    for n in inputs.iter().cloned().chain(params).chain(
        irs.iter()
            .flat_map(|ir| ir.env.iter().map(|(n, _)| n.clone())),
    ) {
        if !order.contains(&n) {
            order.push(n);
        }
    }
    let usable =
        |n: &str| irs.iter().all(|ir| value(ir, n).is_some()) && arg_ty(def, irs, n).is_some();
    let is_param = |n: &str| {
        def.params
            .iter()
            .any(|p| p.name == n && p.kind != ParamKind::Tensor)
    };
    // An input size that is a dim of some weight at every use (`C` in
    // `conv1.weight [out, C, 3, 3]`): a size the weights are made for.
    let in_shapes = |n: &str| {
        irs.iter().all(|ir| match value(ir, n) {
            Some(Num::Int(v)) if v > 1 => own_params(ir)
                .iter()
                .any(|(_, p)| p.shape.contains(&(v as u64))),
            _ => false,
        })
    };
    let mut key: Vec<String> = order
        .iter()
        .filter(|n| {
            ((inputs.contains(n) && (named.contains(*n) || in_shapes(n))) || is_param(n))
                && usable(n)
        })
        .cloned()
        .collect();
    let same =
        |a: &NetIr, b: &NetIr, n: &str| value(a, n).map(Num::bits) == value(b, n).map(Num::bits);
    // Two uses that agree on the key but not on their parameters or their
    // code's named numbers (a named value of the size, say): add the first
    // further name that tells them apart.
    'widen: loop {
        for (i, a) in irs.iter().enumerate() {
            for b in &irs[i + 1..] {
                let agree = key.iter().all(|n| same(a, b, n));
                if !agree || (same_params(a, b) && named.iter().all(|n| same(a, b, n))) {
                    continue;
                }
                let extra = order
                    .iter()
                    .find(|n| !key.contains(*n) && usable(n) && !same(a, b, n));
                match extra {
                    Some(n) => {
                        let at = order.iter().position(|o| o == n).unwrap_or(order.len());
                        let pos = key
                            .iter()
                            .position(|k| order.iter().position(|o| o == k).unwrap_or(0) > at)
                            .unwrap_or(key.len());
                        key.insert(pos, n.clone());
                        continue 'widen;
                    }
                    None => continue,
                }
            }
        }
        break;
    }
    key
}

/// The items of a block struct's `impl` that build and run it alone.
/// `irs` are the instances the struct serves, in its order; `data(m)` the
/// numbers the `m`-th is built with; `named` the struct's named fields.
pub fn items(
    def: &BlockDef,
    struct_name: &Ident,
    irs: &[&NetIr],
    named: &HashSet<String>,
    data: &dyn Fn(usize) -> Vec<u64>,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let key = key_names(def, irs, named);
    let args: Vec<(Ident, NumTy)> = key
        .iter()
        .filter_map(|n| {
            let id: Ident = syn::parse_str(n).ok()?;
            Some((id, arg_ty(def, irs, n)?))
        })
        .collect();
    if args.len() != key.len() {
        return TokenStream::new();
    }
    // One configuration per distinct key, the first use with it.
    let mut seen: Vec<Vec<u64>> = Vec::new();
    let mut configs = Vec::new();
    let mut texts = Vec::new();
    for (m, ir) in irs.iter().enumerate() {
        let k: Vec<u64> = key
            .iter()
            .filter_map(|n| value(ir, n).map(Num::bits))
            .collect();
        if seen.contains(&k) {
            continue;
        }
        seen.push(k.clone());
        let text = key
            .iter()
            .filter_map(|n| Some(format!("{n} = {}", show(value(ir, n)?))))
            .collect::<Vec<_>>()
            .join(", ");
        texts.push(if text.is_empty() {
            "its one configuration".to_string()
        } else {
            text
        });
        let k = k.into_iter().map(Literal::u64_suffixed);
        let d = data(m).into_iter().map(Literal::u64_suffixed);
        let specs = own_params(ir)
            .into_iter()
            .map(|(name, param)| super::spec_tokens(param, &name));
        configs.push(quote!((&[#(#k),*], &[#(#d),*], &[#(#specs)*])));
    }
    let block = struct_name.to_string();
    let source = Ident::new("source", Span::mixed_site());
    let device = Ident::new("device", Span::mixed_site());
    let seed = Ident::new("seed", Span::mixed_site());
    let tensors = Ident::new("tensors", Span::mixed_site());
    let params: Vec<TokenStream> = args
        .iter()
        .map(|(id, ty)| {
            let t = ty.tokens();
            quote!(#id: #t)
        })
        .collect();
    let idents: Vec<&Ident> = args.iter().map(|(id, _)| id).collect();
    let encoded = args.iter().map(|(id, ty)| ty.encode(id));
    let n = Literal::usize_unsuffixed(args.len());
    let got_fmt = key
        .iter()
        .map(|k| format!("{k} = {{}}"))
        .collect::<Vec<_>>()
        .join(", ");
    let got_fmt = if got_fmt.is_empty() {
        "no values".to_string()
    } else {
        got_fmt
    };
    let listed = if key.is_empty() {
        String::new()
    } else {
        format!(" `{}`", key.join(", "))
    };
    let new_doc = format!(
        " `{block}` alone, its parameters taken from `source` under its own state_dict \
         names, built as its first use with these values{listed} is built (see \
         [`Self::CONFIGURATIONS`]); other values are an error naming those."
    );
    let extra: Vec<Ident> = def
        .params
        .iter()
        .filter(|p| p.kind == ParamKind::Tensor)
        .map(|p| Ident::new(&p.name.to_string(), Span::mixed_site()))
        .collect();
    let input = Ident::new("input", Span::mixed_site());
    let rng = Ident::new("rng", Span::mixed_site());
    // Locals hygienic, so that no block name (`next`, `key`) is shadowed.
    let [data, manifest, next, weights, key_id, c, configs_id] =
        ["data", "manifest", "next", "weights", "key", "c", "CONFIGS"]
            .map(|s| Ident::new(s, Span::mixed_site()));
    quote! {
        /// The values this block's code is compiled for, one entry per
        /// distinct use in its `network!` invocation: what [`Self::new`]
        /// accepts.
        pub const CONFIGURATIONS: &'static [&'static str] = &[#(#texts),*];

        #[doc = #new_doc]
        pub fn new(#source: &mut impl #p::ParamSource, #(#params),*) -> #p::Result<Self> {
            let (#data, #manifest) = Self::__configuration(#(#idents),*)?;
            let mut #next = 0usize;
            Self::__build(#source, #block, #manifest, &mut #next, &mut #data.iter())
        }

        /// [`Self::new`] with PyTorch's default initialisation; the same seed
        /// gives the same weights.
        pub fn new_seeded(#seed: u64, #device: &#p::Device, #(#params),*) -> #p::Result<Self> {
            Self::new(&mut #p::Initializer::seeded(#seed, #device), #(#idents),*)
        }

        /// [`Self::new`] from tensors in memory under the block's own
        /// state_dict names, checked against [`Self::manifest`] as a
        /// network's are: every missing, unexpected or mis-shaped tensor is
        /// reported in one error.
        pub fn from_tensors(
            #tensors: ::std::collections::HashMap<::std::string::String, #p::Tensor>,
            #device: &#p::Device,
            #(#params),*
        ) -> #p::Result<Self> {
            let #manifest = Self::manifest(#(#idents),*)?;
            let mut #weights = #p::LoadedWeights::from_map(#block, #tensors, #manifest, #device)?;
            Self::new(&mut #weights, #(#idents),*)
        }

        /// The parameters [`Self::new`] takes for these values, in
        /// state_dict order, under the block's own names.
        pub fn manifest(#(#params),*) -> #p::Result<&'static [#p::ParamSpec]> {
            ::core::result::Result::Ok(Self::__configuration(#(#idents),*)?.1)
        }

        /// Runs the block alone in inference mode, as under a network in
        /// `eval()`: batch norm on its running statistics, dropout off,
        /// fusions on.
        pub fn forward_eval(&self, #input: &#p::Tensor, #(#extra: &#p::Tensor),*) -> #p::Result<#p::Tensor> {
            let #rng = #p::Generator::seeded(0);
            #p::run_on_pool(|| self.forward(#input, #(#extra,)* &#p::BlockCx { training: false, fusion: true, rng: &#rng }))
        }

        #[allow(clippy::type_complexity)]
        fn __configuration(#(#params),*) -> #p::Result<(&'static [u64], &'static [#p::ParamSpec])> {
            const #configs_id: &[(&[u64], &[u64], &[#p::ParamSpec])] = &[#(#configs),*];
            let #key_id: [u64; #n] = [#(#encoded),*];
            match #configs_id.iter().find(|#c| #c.0 == &#key_id[..]) {
                ::core::option::Option::Some(#c) => ::core::result::Result::Ok((#c.1, #c.2)),
                ::core::option::Option::None => ::core::result::Result::Err(#p::Error::BlockConfiguration {
                    block: #block,
                    got: ::std::format!(#got_fmt, #(#idents),*),
                    compiled: Self::CONFIGURATIONS,
                }),
            }
        }
    }
}
