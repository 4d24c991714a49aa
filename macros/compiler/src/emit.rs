//! IR to Rust: one struct per network, with PyTorch state_dict names, a
//! constructor per parameter source, and a straight-line `forward` whose
//! shapes are literals. Emit cannot fail: everything was checked before.
//!
//! When a network has errors, [`stub`] emits the same items with bodies that
//! are never run, so user code that names the network compiles and the user
//! sees only the real mistakes.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::{Attribute, Visibility};

use crate::lower::{FieldIr, FieldKind, Holder, InitIr, NetIr, Registry, Segment, StepIr, StepOp};

mod alone;
mod named;
use crate::ops;
use crate::resolve::WeightInit;
use crate::shape::{fmt_shape, Dim};

/// A parameter's `ParamSpec` constructor, named `name` (the state_dict
/// name: the network's, or a block's own when built alone).
fn spec_tokens(param: &crate::lower::ParamIr, name: &str) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let shape = param.shape.iter().map(|&d| lit(d));
    let shape = quote!(&[#(#shape),*]);
    match param.init {
        InitIr::Weight {
            fan_in,
            fan_out,
            scheme,
        } => {
            let (fi, fo) = (usize_lit(fan_in), usize_lit(fan_out));
            match scheme {
                WeightInit::Default => {
                    let f = lit(fan_in);
                    quote!(#p::ParamSpec::weight(#name, #shape, #f),)
                }
                WeightInit::KaimingUniform => quote! {
                    #p::ParamSpec::weight_with(#name, #shape, #p::Init::KaimingUniform { a: 0.0, fan_in: #fi }),
                },
                WeightInit::KaimingNormal => quote! {
                    #p::ParamSpec::weight_with(#name, #shape, #p::Init::KaimingNormal { fan_in: #fi }),
                },
                WeightInit::XavierUniform => quote! {
                    #p::ParamSpec::weight_with(#name, #shape, #p::Init::XavierUniform { fan_in: #fi, fan_out: #fo }),
                },
                WeightInit::XavierNormal => quote! {
                    #p::ParamSpec::weight_with(#name, #shape, #p::Init::XavierNormal { fan_in: #fi, fan_out: #fo }),
                },
            }
        }
        InitIr::Bias { fan_in } => {
            let f = lit(fan_in);
            quote!(#p::ParamSpec::bias(#name, #shape, #f),)
        }
        InitIr::Ones => quote!(#p::ParamSpec::ones(#name, #shape),),
        InitIr::Zeros => quote!(#p::ParamSpec::zeros(#name, #shape),),
        InitIr::BufferZeros => quote!(#p::ParamSpec::buffer(#name, #shape, #p::Init::Zeros),),
        InitIr::BufferOnes => quote!(#p::ParamSpec::buffer(#name, #shape, #p::Init::Ones),),
        InitIr::Counter => quote!(#p::ParamSpec::counter(#name),),
        InitIr::Embedding { padding_idx } => {
            let pad = match padding_idx {
                Some(i) => {
                    let i = usize_lit(i);
                    quote!(::core::option::Option::Some(#i))
                }
                None => quote!(::core::option::Option::None),
            };
            quote!(#p::ParamSpec::weight_with(#name, #shape, #p::Init::Embedding { padding_idx: #pad }),)
        }
        InitIr::Normal { std_1e6 } => {
            let std = Literal::f64_unsuffixed(std_1e6 as f64 / 1e6);
            quote!(#p::ParamSpec::weight_with(#name, #shape, #p::Init::Normal { std: #std }),)
        }
    }
}

fn lit(n: u64) -> Literal {
    Literal::u64_unsuffixed(n)
}

pub(crate) fn usize_lit(n: u64) -> Literal {
    Literal::usize_suffixed(n as usize)
}

/// Items emitted for every network, real or stub.
struct Skeleton<'a> {
    attrs: &'a [Attribute],
    vis: &'a Visibility,
    name: &'a Ident,
    fields: TokenStream,
    consts: TokenStream,
    /// Bodies of `from_source`, `named_tensors`, `forward`, `named_vars`.
    bodies: [TokenStream; 4],
    input: Ident,
    /// Further inputs of `forward`, after `input`.
    extra: Vec<Ident>,
    /// How many tensors `forward` returns (a tuple when more than one).
    outputs: usize,
    /// Clears the fold caches of the network's blocks.
    clear: TokenStream,
}

fn skeleton(s: Skeleton) -> TokenStream {
    let Skeleton {
        attrs,
        vis,
        name,
        fields,
        consts,
        bodies: [from_source, named_tensors, forward, named_vars],
        input,
        extra,
        outputs,
        clear,
    } = s;
    let p = quote!(::netdsl::__private);
    let ret = if outputs > 1 {
        let ts = (0..outputs).map(|_| quote!(#p::Tensor));
        quote!((#(#ts),*))
    } else {
        quote!(#p::Tensor)
    };
    quote! {
        #(#attrs)*
        #[derive(Debug, Clone)]
        #vis struct #name {
            #fields
            fusion: #p::Fusion,
            training: bool,
            rng: #p::Generator,
        }

        #[allow(dead_code)]
        impl #name {
            #consts

            /// A network with PyTorch's default initialisation, from a fresh random seed.
            pub fn new(device: &#p::Device) -> #p::Result<Self> {
                Self::from_source(&mut #p::Initializer::from_entropy(device))
            }

            /// A network with PyTorch's default initialisation; the same seed gives the same weights.
            pub fn new_seeded(seed: u64, device: &#p::Device) -> #p::Result<Self> {
                let net = Self::from_source(&mut #p::Initializer::seeded(seed, device))?;
                net.rng.reseed(seed);
                ::core::result::Result::Ok(net)
            }

            /// Loads PyTorch state_dict tensors from a safetensors file; every missing,
            /// unexpected or mis-shaped tensor is reported in one error.
            pub fn load(path: impl ::core::convert::AsRef<::std::path::Path>, device: &#p::Device) -> #p::Result<Self> {
                let mut weights = #p::load_weights(Self::NAME, path, Self::MANIFEST, device)?;
                Self::from_source(&mut weights)
            }

            /// Builds the network from tensors in memory (a checkpoint's model part), checked
            /// against [`Self::MANIFEST`] as a file would be.
            pub fn from_tensors(
                tensors: ::std::collections::HashMap<::std::string::String, #p::Tensor>,
                device: &#p::Device,
            ) -> #p::Result<Self> {
                let mut weights = #p::LoadedWeights::from_map(Self::NAME, tensors, Self::MANIFEST, device)?;
                Self::from_source(&mut weights)
            }

            /// Checks a safetensors file's header against [`Self::MANIFEST`] without reading tensor data.
            pub fn check_weights(path: impl ::core::convert::AsRef<::std::path::Path>) -> #p::Result<()> {
                #p::check_weights(Self::NAME, path, Self::MANIFEST)
            }

            /// Saves the parameters as a safetensors file with PyTorch state_dict names.
            pub fn save(&self, path: impl ::core::convert::AsRef<::std::path::Path>) -> #p::Result<()> {
                #p::save_weights(path, &self.named_tensors())
            }

            /// Builds the network from any parameter source, one tensor per manifest entry.
            pub fn from_source(source: &mut impl #p::ParamSource) -> #p::Result<Self> {
                #from_source
            }

            /// Every tensor with its state_dict name, in manifest order.
            pub fn named_tensors(&self) -> ::std::vec::Vec<(&'static str, &#p::Tensor)> {
                #named_tensors
            }

            /// Training mode, as PyTorch's `train()`: dropout is live, batch norm uses the
            /// batch's statistics and updates its running ones, gradients reach the parameters,
            /// and no inference fusion runs.
            pub fn train(&mut self) {
                self.training = true;
                self.fusion.clear();
                #clear
            }

            /// Inference mode, as PyTorch's `eval()` (the default): parameters are used detached,
            /// dropout is off, batch norm uses its running statistics, fusions are recomputed.
            pub fn eval(&mut self) {
                self.training = false;
                self.fusion.clear();
                #clear
            }

            /// Whether the network is in training mode.
            pub fn is_training(&self) -> bool {
                self.training
            }

            /// The trainable parameters as candle variables that share the network's
            /// storage, in manifest order, for an optimiser.
            pub fn vars(&mut self) -> #p::Result<::std::vec::Vec<#p::Var>> {
                ::core::result::Result::Ok(self.named_vars()?.into_iter().map(|(_, v)| v).collect())
            }

            /// [`Self::vars`] with their state_dict names.
            pub fn named_vars(&mut self) -> #p::Result<::std::vec::Vec<(&'static str, #p::Var)>> {
                #named_vars
            }

            /// Reseeds the generator behind dropout masks.
            pub fn set_seed(&self, seed: u64) {
                self.rng.reseed(seed);
            }

            /// The dropout generator's state (for checkpoints).
            pub fn rng_state(&self) -> [u8; 56] {
                self.rng.state()
            }

            /// Restores a state from [`Self::rng_state`]: the run continues identically.
            pub fn set_rng_state(&self, state: &[u8; 56]) {
                self.rng.set_state(state);
            }

            /// Turns the batch-norm folds listed in [`Self::FUSIONS`] on (the default) or off;
            /// off runs each batch norm as written. (Reordered activations give identical
            /// results and stay.)
            pub fn set_fusion(&mut self, enabled: bool) {
                self.fusion.set_enabled(enabled);
            }

            /// Runs the network. The input's shape is checked first. The
            /// whole pass runs on the runtime's thread pool (or on the
            /// caller's, when called from a rayon pool's thread).
            #[allow(unused_doc_comments)]
            pub fn forward(&self, #input: &#p::Tensor #(, #extra: &#p::Tensor)*) -> #p::Result<#ret> {
                #p::run_on_pool(|| -> #p::Result<#ret> {
                    #forward
                })
            }
        }
    }
}

/// A text constant as a raw string literal, so that an expansion prints a
/// multi-line text as its lines: a change in one layer of `SUMMARY` is a
/// change in one line of a snapshot, not of one long escaped line. Falls
/// back to an escaped literal for text a raw string cannot hold.
pub(crate) fn text_literal(text: &str) -> TokenStream {
    if text.contains('\r') {
        return Literal::string(text).into_token_stream();
    }
    let mut hashes = String::from("#");
    while text.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}\"{text}\"{hashes}")
        .parse()
        .unwrap_or_else(|_| Literal::string(text).into_token_stream())
}

/// The constants every network has; the texts come straight from lower.
#[allow(clippy::too_many_arguments)]
fn consts(
    name: &Ident,
    input: &str,
    output: &str,
    summary: &str,
    fusions: &str,
    graph: (&str, &str),
    parameters: u64,
    manifest: TokenStream,
    summary_spec: TokenStream,
) -> TokenStream {
    let (mermaid, dot) = graph;
    let (summary, fusions) = (text_literal(summary), text_literal(fusions));
    let (mermaid, dot) = (text_literal(mermaid), text_literal(dot));
    let p = quote!(::netdsl::__private);
    let name = name.to_string();
    let parameters = Literal::usize_unsuffixed(parameters as usize);
    quote! {
        /// The network's name, as written in `network!`.
        pub const NAME: &'static str = #name;
        /// The declared input shape.
        pub const INPUT_SHAPE: &'static str = #input;
        /// The inferred output shape.
        pub const OUTPUT_SHAPE: &'static str = #output;
        /// Layers, output shapes, parameters, multiply-adds and FLOPs, computed at compile time.
        pub const SUMMARY: &'static str = #summary;
        /// The dataflow as a Mermaid diagram: one node per tensor with its shape.
        pub const GRAPH_MERMAID: &'static str = #mermaid;
        /// The dataflow as Graphviz DOT (`dot -Tsvg`).
        pub const GRAPH_DOT: &'static str = #dot;
        /// The inference fusions the compiler applied, one per line.
        pub const FUSIONS: &'static str = #fusions;
        /// The number of trainable parameters (buffers excluded).
        pub const PARAMETERS: usize = #parameters;
        /// Every tensor of the state_dict: PyTorch name, shape, dtype, initialisation.
        pub const MANIFEST: &'static [#p::ParamSpec] = &[#manifest];
        /// The summary's rows with their sizes as expressions in the input's symbols,
        /// for [`Self::summary_at`].
        #[doc(hidden)]
        pub const SUMMARY_SPEC: #p::SummarySpec = #summary_spec;

        /// [`Self::SUMMARY`] at given sizes of the input's symbols, e.g.
        /// `&[("B", 1), ("H", 256), ("W", 256)]`: every output shape and multiply-add
        /// count evaluated. Each symbol needs one size, and the sizes must be ones
        /// `forward` accepts.
        pub fn summary_at(sizes: &[(&str, usize)]) -> #p::Result<::std::string::String> {
            #p::summary_at(&Self::SUMMARY_SPEC, sizes)
        }
    }
}

/// `SUMMARY_SPEC`: the summary's rows with every size an expression in the
/// input's symbols, the input's dims as `forward` checks them.
fn summary_spec(name: &str, input: &str, dims: &[TokenStream], ir: Option<&NetIr>) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let rows = ir.map_or(&[][..], |ir| &ir.rows).iter().map(|r| {
        let (layer, op, params) = (&r.layer, &r.op, lit(r.params));
        let output = r.output.iter().map(ToString::to_string);
        let macs = r.macs.terms.iter().map(|(k, dims)| {
            let k = lit(*k);
            let dims = dims.iter().map(ToString::to_string);
            quote!((#k, &[#(#dims),*]))
        });
        quote! {
            #p::SummaryRow { layer: #layer, op: #op, output: &[#(#output),*], params: #params, macs: &[#(#macs),*] }
        }
    });
    let notes = text_literal(ir.map_or("", |ir| &ir.notes));
    // The further inputs' own symbols.
    let mut more: Vec<String> = Vec::new();
    if let Some(ir) = ir {
        let first: Vec<String> = ir.input_shape.iter().map(ToString::to_string).collect();
        for e in &ir.extra_inputs {
            for d in &e.shape {
                let s = d.to_string();
                if d.known().is_none() && !first.contains(&s) && !more.contains(&s) {
                    more.push(s);
                }
            }
        }
    }
    quote! {
        #p::SummarySpec { network: #name, input: #input, dims: &[#(#dims),*], rows: &[#(#rows),*], notes: #notes, more: &[#(#more),*] }
    }
}

pub fn emit(
    ir: &NetIr,
    code: &BlockCode,
    reg: &Registry,
    defs: &[crate::ast::BlockDef],
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let mut attrs = ir.attrs.clone();
    let has_docs = attrs.iter().any(|a| a.path().is_ident("doc"));
    let mut doc = format!(
        "{}# Summary\n\n```text\n{}```",
        if has_docs { "\n" } else { "" },
        ir.summary
    );
    if !ir.fusions.is_empty() {
        doc += &format!("\n\n# Inference fusions\n\n{}", bullet_list(&ir.fusions));
    }
    attrs.push(syn::parse_quote!(#[doc = #doc]));

    let fields = ir.fields.iter().map(|f| {
        let name = &f.ident;
        if let FieldKind::Block { def, instance } = f.kind {
            let ty = code.ident(def, instance);
            let vis = defs.get(def).map(|d| &d.vis);
            let doc = format!("{} tensors", f.params.len());
            return quote!(#[doc = #doc] #vis #name: #ty,);
        }
        let ty = field_type(f);
        let doc = f
            .params
            .iter()
            .map(|p| format!("`{}` {:?}", p.name, p.shape))
            .collect::<Vec<_>>()
            .join(", ");
        quote!(#[doc = #doc] pub #name: #ty,)
    });
    let manifest = ir
        .fields
        .iter()
        .flat_map(|f| &f.params)
        .map(|param| spec_tokens(param, &param.name));
    let input = fmt_shape(&ir.input_shape);
    let spec = summary_spec(&ir.name.to_string(), &input, &input_dims(ir), Some(ir));
    let consts = consts(
        &ir.name,
        &input,
        &if ir.extra_outputs.is_empty() {
            fmt_shape(&ir.output_shape)
        } else {
            let all: Vec<String> = std::iter::once(&ir.output_shape)
                .chain(ir.extra_outputs.iter().map(|(_, s)| s))
                .map(|s| fmt_shape(s))
                .collect();
            format!("({})", all.join(", "))
        },
        &ir.summary,
        &ir.fusions.join("\n"),
        (&ir.mermaid, &ir.dot),
        ir.parameters,
        quote!(#(#manifest)*),
        spec,
    );

    let mut index = 0usize;
    let inits: Vec<TokenStream> = ir
        .fields
        .iter()
        .map(|f| match f.kind {
            FieldKind::Block { def, instance } => {
                let name = &f.ident;
                let ty = code.ident(def, instance);
                let start = usize_lit(index as u64);
                index += f.params.len();
                let data = code.data(reg, def, instance).into_iter().map(Literal::u64_suffixed);
                quote! {
                    #name: {
                        let mut next = #start;
                        #ty::__build(source, Self::NAME, manifest, &mut next, &mut [#(#data),*].iter())?
                    },
                }
            }
            _ => gen_field_init(f, &mut index),
        })
        .collect();
    let folds = lit(ir.folds as u64);
    let from_source = quote! {
        let manifest = Self::MANIFEST;
        ::core::result::Result::Ok(Self {
            #(#inits)*
            fusion: #p::Fusion::new(#folds),
            training: false,
            rng: #p::Generator::from_entropy(),
        })
    };
    let (named_tensors, named_vars) = if has_blocks(ir) {
        // Blocks hand over their tensors in manifest order; the names come
        // from the manifest.
        let pushes = ir.fields.iter().map(|f| {
            let field = &f.ident;
            if let FieldKind::Block { .. } = f.kind {
                return quote!(self.#field.__tensors(&mut ts););
            }
            let ms = f.params.iter().map(|param| {
                let at = member_access(quote!(self.#field), &param.member, false);
                quote!(ts.push(&#at);)
            });
            quote!(#(#ms)*)
        });
        let vars = ir.fields.iter().map(|f| {
            let field = &f.ident;
            if let FieldKind::Block { .. } = f.kind {
                return quote!(self.#field.__vars(&mut vs)?;);
            }
            let ms = f
                .params
                .iter()
                .filter(|param| param.init.trainable())
                .map(|param| {
                    let at = member_access(quote!(self.#field), &param.member, false);
                    quote!(vs.push(#p::var_of(&mut #at)?);)
                });
            quote!(#(#ms)*)
        });
        (
            quote! {
                let mut ts = ::std::vec::Vec::with_capacity(Self::MANIFEST.len());
                #(#pushes)*
                Self::MANIFEST.iter().map(|s| s.name).zip(ts).collect()
            },
            quote! {
                let mut vs = ::std::vec::Vec::new();
                #(#vars)*
                ::core::result::Result::Ok(
                    Self::MANIFEST.iter().filter(|s| s.trainable).map(|s| s.name).zip(vs).collect(),
                )
            },
        )
    } else {
        let named = ir.fields.iter().flat_map(|f| {
            let field = &f.ident;
            f.params.iter().map(move |param| {
                let name = &param.name;
                let at = member_access(quote!(self.#field), &param.member, false);
                quote!((#name, &#at))
            })
        });
        let vars = ir.fields.iter().flat_map(|f| {
            let field = &f.ident;
            let p = p.clone();
            f.params
                .iter()
                .filter(|param| param.init.trainable())
                .map(move |param| {
                    let name = &param.name;
                    let at = member_access(quote!(self.#field), &param.member, false);
                    quote!((#name, #p::var_of(&mut #at)?))
                })
        });
        (
            quote!(::std::vec![#(#named),*]),
            quote!(::core::result::Result::Ok(::std::vec![#(#vars),*])),
        )
    };
    let clears = ir
        .fields
        .iter()
        .filter(|f| matches!(f.kind, FieldKind::Block { .. }))
        .map(|f| {
            let field = &f.ident;
            quote!(self.#field.__clear();)
        });
    let clear = quote!(#(#clears)*);

    skeleton(Skeleton {
        attrs: &attrs,
        vis: &ir.vis,
        name: &ir.name,
        fields: quote!(#(#fields)*),
        consts,
        bodies: [from_source, named_tensors, gen_forward(ir), named_vars],
        input: ir.input.clone(),
        extra: ir.extra_inputs.iter().map(|e| e.ident.clone()).collect(),
        outputs: 1 + ir.extra_outputs.len(),
        clear,
    })
}

fn bullet_list(lines: &[String]) -> String {
    lines.iter().map(|l| format!("- {l}\n")).collect()
}

/// `base.a.b` for the member path `a.b`; `base` itself for the empty path.
/// `base.member.path`; `borrowed` marks a base bound by reference
/// (`Some(f) = &self.x`), which a bare tensor (empty member) dereferences.
fn member_access(base: TokenStream, member: &str, borrowed: bool) -> TokenStream {
    if member.is_empty() && borrowed {
        return quote!((*#base));
    }
    // A numeric segment indexes a list: `weight_ih.3` is `weight_ih[3]`.
    let segs = member
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<usize>() {
            Ok(i) => {
                let i = Literal::usize_unsuffixed(i);
                quote!([#i])
            }
            Err(_) => {
                let m = Ident::new(s, Span::call_site());
                quote!(.#m)
            }
        });
    quote!(#base #(#segs)*)
}

/// The Rust type of a field: its block's struct, or its layer's holder
/// (generic over `NoBias` when members are absent).
fn field_type(f: &FieldIr) -> TokenStream {
    let p = quote!(::netdsl::__private);
    match &f.kind {
        FieldKind::Layer(Holder { ty: None, .. }) => quote!(#p::Tensor),
        FieldKind::Layer(Holder {
            ty: Some(ty),
            lists,
            ..
        }) => {
            let ty = Ident::new(ty, Span::call_site());
            if f.absent.is_empty() || *lists {
                quote!(#p::layers::#ty)
            } else {
                quote!(#p::layers::#ty<#p::layers::NoBias>)
            }
        }
        // Named by the caller, which knows the block's structs.
        FieldKind::Block { .. } => quote!(_),
    }
}

/// A layer's holder built from an expression per present member: a struct
/// literal, nested for sub-layers, with `NoBias` for absent members.
fn holder_literal(f: &FieldIr, exprs: &[TokenStream]) -> TokenStream {
    let FieldKind::Layer(holder) = &f.kind else {
        return quote!(::core::compile_error!(
            "netdsl: a block field has no holder"
        ));
    };
    let nobias = if holder.lists {
        quote!(::std::vec::Vec::new())
    } else {
        quote!(::netdsl::__private::layers::NoBias)
    };
    // A holder of lists gathers its members out of order: bind each first,
    // in manifest order (a block's `next_param` reads them in turn).
    let locals: Vec<Ident> = (0..exprs.len())
        .map(|i| format_ident!("p{i}", span = Span::mixed_site()))
        .collect();
    let local_exprs: Vec<TokenStream> = locals.iter().map(|l| quote!(#l)).collect();
    let used = if holder.lists {
        &local_exprs[..]
    } else {
        exprs
    };
    let mut members: Vec<(&str, &TokenStream)> = f
        .params
        .iter()
        .map(|p| p.member.as_str())
        .zip(used)
        .collect();
    members.extend(f.absent.iter().map(|m| (*m, &nobias)));
    if let (true, Some(ty)) = (holder.lists, holder.ty) {
        let literal = literal_at(ty, "", holder, &members);
        return quote!({ #(let #locals = #exprs;)* #literal });
    }
    match holder.ty {
        None => match exprs.first() {
            Some(e) => e.clone(),
            None => quote!(::core::compile_error!(
                "netdsl: a tensor field without its tensor"
            )),
        },
        Some(ty) => literal_at(ty, "", holder, &members),
    }
}

/// The literal of the holder `ty` at `prefix` (`""`, or `out_proj.`).
fn literal_at(
    ty: &str,
    prefix: &str,
    holder: &Holder,
    members: &[(&str, &TokenStream)],
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let mut entries = Vec::new();
    let mut subs: Vec<&str> = Vec::new();
    for (path, expr) in members {
        let Some(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        match rest.split_once('.') {
            None => {
                let m = Ident::new(rest, Span::call_site());
                entries.push(quote!(#m: #expr,));
            }
            Some((head, tail)) if !subs.contains(&head) => {
                subs.push(head);
                let path = format!("{prefix}{head}");
                let m = Ident::new(head, Span::call_site());
                if tail.parse::<usize>().is_ok() {
                    // A list: `weight_ih.0`, `weight_ih.1`, .. in index order.
                    let mut items: Vec<(usize, &TokenStream)> = members
                        .iter()
                        .filter_map(|(p, e)| {
                            let i = p.strip_prefix(&path)?.strip_prefix('.')?.parse().ok()?;
                            Some((i, *e))
                        })
                        .collect();
                    items.sort_by_key(|(i, _)| *i);
                    let items = items.iter().map(|(_, e)| e);
                    entries.push(quote!(#m: ::std::vec![#(#items),*],));
                    continue;
                }
                let value = match holder.subs.iter().find(|(s, _)| *s == path) {
                    Some((_, sub)) => literal_at(sub, &format!("{path}."), holder, members),
                    None => {
                        let msg = format!("netdsl: no holder type for the sub-layer `{path}`");
                        quote!(::core::compile_error!(#msg))
                    }
                };
                entries.push(quote!(#m: #value,));
            }
            Some(_) => {}
        }
    }
    let ty = Ident::new(ty, Span::call_site());
    quote!(#p::layers::#ty { #(#entries)* })
}

fn gen_field_init(f: &FieldIr, index: &mut usize) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let name = &f.ident;
    let exprs: Vec<TokenStream> = f
        .params
        .iter()
        .map(|_| {
            let i = Literal::usize_unsuffixed(*index);
            *index += 1;
            quote!(#p::make_var(#p::take(source, Self::NAME, &manifest[#i])?)?)
        })
        .collect();
    let value = holder_literal(f, &exprs);
    quote!(#name: #value,)
}

/// The declared input's dims as `forward` checks them (`InputDim`s), with
/// what the shapes need of each symbol.
fn input_dims(ir: &NetIr) -> Vec<TokenStream> {
    shape_dims(ir, &ir.input_shape)
}

/// An input shape's dims as `forward` checks them.
fn shape_dims(ir: &NetIr, shape: &[Dim]) -> Vec<TokenStream> {
    let p = quote!(::netdsl::__private);
    shape
        .iter()
        .map(|d| match d {
            Dim::Known(n) => {
                let n = usize_lit(*n);
                quote!(#p::InputDim::Fixed(#n))
            }
            d => {
                let s = d.to_string();
                match ir.constraints.rules.get(&s) {
                    Some(r) if r.period > 1 || r.min > 1 => {
                        let (m, min) = (usize_lit(r.period), usize_lit(r.min));
                        let residues = r.residues.iter().map(|v| usize_lit(*v));
                        let (mw, nw) = (&r.residues_why, &r.min_why);
                        quote!(#p::InputDim::Rule { sym: #s, multiple: #m, residues: &[#(#residues),*], min: #min, multiple_why: #mw, min_why: #nw })
                    }
                    _ => quote!(#p::InputDim::Sym(#s)),
                }
            }
        })
        .collect()
}

/// The check of one input of `forward`: its dtype and declared shape, the
/// symbols' rules included. `who` names it in errors.
fn input_check(
    ir: &NetIr,
    who: &str,
    input: &Ident,
    shape: &[Dim],
    ids: Option<&str>,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let expected = fmt_shape(shape);
    let dims = shape_dims(ir, shape);
    match ids {
        None => quote! {
            #p::check_input(#who, #expected, #input, &[#(#dims),*])?;
        },
        Some(dtype) => {
            let dtype = format_ident!("{}", dtype.to_uppercase());
            quote! {
                #p::check_token_input(#who, #expected, #p::DType::#dtype, #input, &[#(#dims),*])?;
            }
        }
    }
}

fn gen_forward(ir: &NetIr) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let input = &ir.input;
    let name = ir.name.to_string();
    let x = format_ident!("xs", span = Span::mixed_site());
    let mut body = input_check(ir, &name, input, &ir.input_shape, ir.input_ids.as_deref());
    // Further inputs: each checked, then every symbol they share with an
    // earlier input must have one size.
    let mut seen: Vec<(String, String, &Ident, usize)> = ir
        .input_shape
        .iter()
        .enumerate()
        .filter(|(_, d)| d.known().is_none())
        .map(|(axis, d)| (d.to_string(), input.to_string(), input, axis))
        .collect();
    for e in &ir.extra_inputs {
        let who = format!("{name}({})", e.name);
        body.extend(input_check(ir, &who, &e.ident, &e.shape, e.ids.as_deref()));
        for (axis, d) in e.shape.iter().enumerate() {
            let Dim::Lin(l) = d else { continue };
            if !l.is_plain() {
                continue;
            }
            let sym = l.sym.clone();
            if let Some((_, first, at, first_axis)) = seen.iter().find(|(s, ..)| *s == sym) {
                let (a, b) = (usize_lit(*first_axis as u64), usize_lit(axis as u64));
                let ident = &e.ident;
                let second = &e.name;
                body.extend(quote! {
                    #p::check_same_size(#name, #sym, (#first, #at.dim(#a)?), (#second, #ident.dim(#b)?))?;
                });
            } else {
                seen.push((sym, e.name.clone(), &e.ident, axis));
            }
        }
    }
    if has_blocks(ir) {
        let cx = cx_ident();
        body.extend(quote! {
            let #cx = #p::BlockCx { training: self.training, fusion: self.fusion.enabled(), rng: &self.rng };
        });
    }
    let env = CodeEnv::network();
    // A plain chain: the steps straight in `forward`.
    if let [Segment::Chain {
        src, dst, steps, ..
    }] = ir.segments.as_slice()
    {
        if *dst == ir.output && *dst == ir.values.len() - 1 && ir.extra_outputs.is_empty() {
            let (code, first) = chain_code(ir, *src, steps, &x, &env);
            body.extend(code);
            let src = &ir.values[*src];
            let out = if first {
                quote!(#src.clone())
            } else {
                quote!(#x)
            };
            body.extend(quote!(::core::result::Result::Ok(#out)));
            return body;
        }
    }
    for segment in &ir.segments {
        body.extend(gen_segment(ir, segment, &x, &env));
    }
    let out = &ir.values[ir.output];
    if ir.extra_outputs.is_empty() {
        body.extend(quote!(::core::result::Result::Ok(#out)));
    } else {
        // Several outputs: each may be any value, the same one twice too.
        let extra = ir.extra_outputs.iter().map(|(v, _)| &ir.values[*v]);
        body.extend(quote!(::core::result::Result::Ok((#out.clone() #(, #extra.clone())*))));
    }
    body
}

fn has_blocks(ir: &NetIr) -> bool {
    ir.fields
        .iter()
        .any(|f| matches!(f.kind, FieldKind::Block { .. }))
}

/// A chain's steps on `src`; `true` when none emitted code (the chain is
/// the identity).
fn chain_code(
    ir: &NetIr,
    src: usize,
    steps: &[StepIr],
    x: &Ident,
    env: &CodeEnv,
) -> (TokenStream, bool) {
    let mut code = TokenStream::new();
    let mut first = true;
    for step in steps {
        let from = if first {
            let v = &ir.values[src];
            quote!(#v)
        } else {
            quote!(#x)
        };
        if let Some(c) = gen_step(step, &from, x, env) {
            code.extend(c);
            first = false;
        }
    }
    (code, first)
}

/// One segment: `let dst = ..;`.
fn gen_segment(ir: &NetIr, segment: &Segment, x: &Ident, env: &CodeEnv) -> TokenStream {
    let value = |v: usize| {
        let id = &ir.values[v];
        quote!(#id)
    };
    match segment {
        Segment::Chain {
            src,
            dst,
            steps,
            states,
            ..
        } => {
            let (code, first) = chain_code(ir, *src, steps, x, env);
            let (src, dst) = (value(*src), &ir.values[*dst]);
            if *states {
                let kept = states_of(dst);
                let st = crate::ops::rnn::states_ident();
                quote!(let (#dst, #kept) = { #code (#x, #st) };)
            } else if first {
                quote!(let #dst = #src.clone();)
            } else {
                quote!(let #dst = { #code #x };)
            }
        }
        Segment::State {
            src, index, dst, ..
        } => {
            let (kept, dst) = (states_of(&ir.values[*src]), &ir.values[*dst]);
            if *index == 0 {
                quote!(let #dst = #kept.h.clone();)
            } else {
                quote!(let #dst = #kept.cell()?;)
            }
        }
        Segment::Select { src, dst, .. } => {
            let (src, dst) = (value(*src), &ir.values[*dst]);
            quote!(let #dst = #src.clone();)
        }
        Segment::Merge {
            kind,
            inputs,
            dst,
            comment,
            ..
        } => {
            let dst = &ir.values[*dst];
            let args: Vec<TokenStream> = inputs.iter().map(|&v| value(v)).collect();
            let code = crate::ops::merge::emit(kind, dst, &args);
            if env.block {
                code
            } else {
                let comment = format!(" {comment}");
                quote! {
                    #[doc = #comment]
                    #code
                }
            }
        }
    }
}

/// The variable holding the outputs of the recurrent layer that ends the
/// chain making `v`.
fn states_of(v: &Ident) -> Ident {
    format_ident!("{}_states", v.to_string(), span = Span::mixed_site())
}

/// How emitted code reaches a network's state: a network's own fields, or
/// inside a block, the context its network passes down.
pub struct CodeEnv {
    pub block: bool,
    /// Fields only some instances of a block have: `Option`s, bound to a
    /// local of the same name inside the branch that uses them.
    pub optional: std::collections::HashSet<String>,
}

impl CodeEnv {
    fn network() -> Self {
        Self {
            block: false,
            optional: Default::default(),
        }
    }

    pub(crate) fn field(&self, f: &Ident) -> TokenStream {
        if self.optional.contains(&f.to_string()) {
            quote!((*#f))
        } else {
            quote!(self.#f)
        }
    }

    pub(crate) fn training(&self) -> TokenStream {
        let cx = cx_ident();
        if self.block {
            quote!(#cx.training)
        } else {
            quote!(self.training)
        }
    }

    pub(crate) fn fusion_on(&self) -> TokenStream {
        let cx = cx_ident();
        if self.block {
            quote!(#cx.fusion)
        } else {
            quote!(self.fusion.enabled())
        }
    }

    pub(crate) fn rng(&self) -> TokenStream {
        let cx = cx_ident();
        if self.block {
            quote!(#cx.rng)
        } else {
            quote!(&self.rng)
        }
    }
}

/// The block context's variable in emitted code.
fn cx_ident() -> Ident {
    Ident::new("cx", Span::mixed_site())
}

fn gen_step(step: &StepIr, src: &TokenStream, x: &Ident, env: &CodeEnv) -> Option<TokenStream> {
    let comment = format!(" {}", step.comment());
    let e = ops::EmitCx::new(src, x, env);
    let code = match &step.op {
        StepOp::Conv2d {
            field,
            pad,
            stride,
            dilation,
            groups,
            bias,
            fold,
            epilogue,
            prepared,
            out_ch: _,
            kernel: _,
        } => ops::conv::emit_conv2d(
            &e,
            field,
            ops::conv::ConvGeom {
                pad: *pad,
                stride: *stride,
                dilation: *dilation,
                groups: *groups,
            },
            *bias,
            fold.as_ref(),
            *epilogue,
            *prepared,
        ),
        StepOp::Pool2d {
            kind,
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
            count_include_pad,
        } => ops::pool::emit_pool(
            &e,
            *kind,
            *kernel,
            *stride,
            *padding,
            *dilation,
            *ceil_mode,
            *count_include_pad,
        ),
        StepOp::ConvTranspose2d {
            field,
            stride,
            padding,
            output_padding,
            dilation,
            groups,
            bias,
        } => ops::conv::emit_conv_transpose2d(
            &e,
            field,
            *stride,
            *padding,
            *output_padding,
            *dilation,
            *groups,
            *bias,
        ),
        StepOp::Upsample {
            out,
            bilinear,
            align_corners,
        } => ops::resize::emit_upsample(&e, *out, *bilinear, *align_corners),
        StepOp::PixelShuffle { r } => ops::resize::emit_pixel_shuffle(&e, *r),
        StepOp::Filter(f) => ops::filter::emit_filter(&e, f),
        StepOp::AdaptivePool2d { kind, out } => ops::pool::emit_adaptive_pool2d(&e, *kind, *out),
        StepOp::Flatten { start, end, rank } => ops::reshape::emit_flatten(&e, *start, *end, *rank),
        StepOp::Linear {
            field,
            bias,
            rank,
            fold,
            prepared,
            epilogue,
        } => ops::linear::emit_linear(
            &e,
            field,
            *bias,
            *rank,
            fold.as_ref(),
            (*prepared, *epilogue),
        ),
        StepOp::Dropout { p: rate } => ops::dropout::emit_dropout(&e, *rate),
        StepOp::LayerNorm {
            field,
            centre,
            dims,
            eps,
            affine,
            bias,
        } => ops::layer_norm::emit_layer_norm(&e, field, *centre, *dims, *eps, *affine, *bias),
        StepOp::MultiHeadAttention {
            field,
            heads,
            causal,
            dropout,
            memory,
            key_lengths,
            mask,
            prepared,
        } => ops::attention::emit_mha(
            &e,
            field,
            ops::attention::MhaEmit {
                heads: *heads,
                causal: *causal,
                dropout: *dropout,
                prepared: *prepared,
            },
            memory.as_ref(),
            key_lengths.as_ref(),
            mask.as_ref(),
        ),
        StepOp::PatchEmbed { field, patch } => ops::vit::emit_patch_embed(&e, field, *patch),
        StepOp::ClassToken { field } => ops::vit::emit_class_token(&e, field),
        StepOp::PosEmbedding { field } => ops::vit::emit_pos_embedding(&e, field),
        StepOp::SinusoidalEncoding => ops::vit::emit_sinusoidal(&e),
        StepOp::DropPath { p: rate } => ops::vit::emit_drop_path(&e, *rate),
        StepOp::Select { dim, index } => ops::vit::emit_select(&e, *dim, *index),
        StepOp::BatchNorm {
            field,
            eps,
            momentum,
            folded,
            ..
        } => ops::norm::emit_batch_norm(&e, field, *eps, *momentum, *folded)?,
        StepOp::Act(a) => ops::activation::emit_activation(&e, *a),
        StepOp::Block { field, extra } => {
            let f = env.field(field);
            let cx = cx_ident();
            quote!(let #x = #f.forward(&#src, #(&#extra,)* &#cx)?;)
        }
        StepOp::Softmax { dim, log } => ops::activation::emit_softmax(&e, *dim, *log),
        StepOp::Rnn(r) => ops::rnn::emit_rnn(&e, r),
        StepOp::Reverse { dim, lengths } => ops::reshape::emit_reverse(&e, *dim, lengths.as_ref()),
        StepOp::Conv1d {
            field,
            pad,
            stride,
            dilation,
            groups,
            bias,
            ..
        } => ops::conv1d::emit_conv1d(&e, field, *pad, *stride, *dilation, *groups, *bias),
        StepOp::Pool1d {
            kind,
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
            count_include_pad,
        } => ops::pool::emit_pool(
            &e,
            *kind,
            *kernel,
            *stride,
            *padding,
            *dilation,
            *ceil_mode,
            *count_include_pad,
        ),
        StepOp::AdaptivePool1d { kind, out } => ops::pool1d::emit_adaptive_pool1d(&e, *kind, *out),
        StepOp::Transpose { d0, d1 } => ops::reshape::emit_transpose(&e, *d0, *d1),
        StepOp::Embedding {
            field,
            label,
            padding_idx,
        } => ops::embedding::emit_embedding(&e, field, label, *padding_idx),
    };
    if env.block {
        return Some(code);
    }
    Some(quote! {
        #[doc = #comment]
        #code
    })
}

/// The same items as [`emit`] for a network with errors: bodies never run
/// (the crate does not compile), signatures match, so the user's own code
/// that uses the network raises no follow-on errors.
pub fn stub(
    attrs: &[Attribute],
    vis: &Visibility,
    name: &Ident,
    input: &Ident,
    extra: &[Ident],
    outputs: usize,
) -> TokenStream {
    let unreachable = quote!(::core::unreachable!("this network has compile errors"));
    skeleton(Skeleton {
        attrs,
        vis,
        name,
        fields: TokenStream::new(),
        consts: consts(
            name,
            "",
            "",
            "",
            "",
            ("", ""),
            0,
            TokenStream::new(),
            summary_spec(&name.to_string(), "", &[], None),
        ),
        bodies: [
            unreachable.clone(),
            unreachable.clone(),
            quote!(let _ = (#input #(, #extra)*); #unreachable),
            unreachable.clone(),
        ],
        input: input.clone(),
        extra: extra.to_vec(),
        outputs,
        clear: TokenStream::new(),
    })
}

// ---------------------------------------------------------------------------
// Blocks: one struct per block, shared by every use.
// ---------------------------------------------------------------------------

/// A block's code for one instance, before instances are merged: plain
/// code, or an `if` whose branch this instance took.
enum Piece {
    Code(TokenStream),
    Branch {
        id: usize,
        taken: bool,
        body: Vec<Piece>,
        src: Ident,
        dst: Ident,
    },
}

fn build_pieces(ir: &NetIr, segs: &[Segment], depth: usize, env: &CodeEnv) -> Vec<Piece> {
    let x = format_ident!("xs", span = Span::mixed_site());
    let mut out = Vec::new();
    let mut i = 0;
    while i < segs.len() {
        if segs[i].branch().len() > depth {
            let (id, taken) = segs[i].branch()[depth];
            let mut j = i;
            while j < segs.len() && segs[j].branch().len() > depth {
                j += 1;
            }
            let body = build_pieces(ir, &segs[i..j], depth + 1, env);
            if let Some(Segment::Select { src, dst, .. }) = segs.get(j) {
                out.push(Piece::Branch {
                    id,
                    taken,
                    body,
                    src: ir.values[*src].clone(),
                    dst: ir.values[*dst].clone(),
                });
            }
            i = j + 1;
            continue;
        }
        match &segs[i] {
            Segment::Select {
                id,
                taken,
                src,
                dst,
                ..
            } => out.push(Piece::Branch {
                id: *id,
                taken: *taken,
                body: Vec::new(),
                src: ir.values[*src].clone(),
                dst: ir.values[*dst].clone(),
            }),
            seg => out.push(Piece::Code(gen_segment(ir, seg, &x, env))),
        }
        i += 1;
    }
    out
}

/// Merges the code of a block's instances into one: where only a number
/// differs, it becomes an entry of the struct's `cfg` (integers) or `cff`
/// (floats); where an instance took the other branch of an `if`, both
/// branches are emitted behind a flag. `None` when the code differs in
/// more than numbers.
struct Merger<'a> {
    members: usize,
    ints: Vec<Vec<u64>>,
    floats: Vec<Vec<f64>>,
    flags: Vec<Vec<bool>>,
    /// Optional fields bound at the start of each branch.
    binds: &'a std::collections::HashMap<(usize, bool), Vec<Ident>>,
    block: String,
    /// Fields named after the block's names (`self.stride`).
    names: named::Names<'a>,
}

impl Merger<'_> {
    fn pieces(&mut self, group: &[(usize, &[Piece])]) -> Option<TokenStream> {
        let p = quote!(::netdsl::__private);
        // No instance (a block used nowhere, or only by a network with an
        // error): nothing to merge.
        let first = group.first()?;
        let len = first.1.len();
        if group.iter().any(|(_, ps)| ps.len() != len) {
            return None;
        }
        let mut out = TokenStream::new();
        for pos in 0..len {
            match &first.1[pos] {
                Piece::Code(_) => {
                    let codes: Option<Vec<(usize, TokenStream)>> = group
                        .iter()
                        .map(|(m, ps)| match &ps[pos] {
                            Piece::Code(c) => Some((*m, c.clone())),
                            Piece::Branch { .. } => None,
                        })
                        .collect();
                    out.extend(self.tokens(&codes?)?);
                }
                Piece::Branch { id, dst, .. } => {
                    let mut sides: [Vec<(usize, &[Piece], &Ident)>; 2] = [Vec::new(), Vec::new()];
                    for (m, ps) in group {
                        let Piece::Branch {
                            id: i,
                            taken,
                            body,
                            src,
                            dst: d,
                        } = &ps[pos]
                        else {
                            return None;
                        };
                        if i != id || d != dst {
                            return None;
                        }
                        sides[usize::from(!*taken)].push((*m, body.as_slice(), src));
                    }
                    let mut code = Vec::new();
                    for (side, taken) in sides.iter().zip([true, false]) {
                        if side.is_empty() {
                            code.push(None);
                            continue;
                        }
                        let src = side[0].2;
                        if side.iter().any(|(_, _, s)| *s != src) {
                            return None;
                        }
                        let bodies: Vec<(usize, &[Piece])> =
                            side.iter().map(|(m, b, _)| (*m, *b)).collect();
                        let body = if bodies[0].1.is_empty() {
                            TokenStream::new()
                        } else {
                            self.pieces(&bodies)?
                        };
                        let binds = self.binds.get(&(*id, taken)).cloned().unwrap_or_default();
                        let block = &self.block;
                        let binds = binds.iter().map(|f| {
                            let name = f.to_string();
                            quote! {
                                let ::core::option::Option::Some(#f) = &self.#f else {
                                    return ::core::result::Result::Err(#p::missing_child(#block, #name));
                                };
                            }
                        });
                        code.push(Some(quote!({ #(#binds)* #body #src.clone() })));
                    }
                    match (code[0].take(), code[1].take()) {
                        (Some(then), Some(els)) => {
                            if let Some(cond) = self.names.condition(*id) {
                                out.extend(quote!(let #dst = if #cond #then else #els;));
                                continue;
                            }
                            let k = Literal::usize_unsuffixed(self.flags.len());
                            let mut taken = vec![false; self.members];
                            for (m, _, _) in &sides[0] {
                                taken[*m] = true;
                            }
                            self.flags.push(taken);
                            out.extend(quote!(let #dst = if self.branches[#k] #then else #els;));
                        }
                        (Some(only), None) | (None, Some(only)) => {
                            out.extend(quote!(let #dst = #only;));
                        }
                        (None, None) => return None,
                    }
                }
            }
        }
        Some(out)
    }

    fn tokens(&mut self, group: &[(usize, TokenStream)]) -> Option<TokenStream> {
        use proc_macro2::{Group, TokenTree};
        let trees: Vec<(usize, Vec<TokenTree>)> = group
            .iter()
            .map(|(m, ts)| (*m, ts.clone().into_iter().collect()))
            .collect();
        let len = trees.first()?.1.len();
        if trees.iter().any(|(_, t)| t.len() != len) {
            return None;
        }
        let mut out = TokenStream::new();
        for pos in 0..len {
            match &trees[0].1[pos] {
                TokenTree::Group(g) => {
                    let inner: Option<Vec<(usize, TokenStream)>> = trees
                        .iter()
                        .map(|(m, t)| match &t[pos] {
                            TokenTree::Group(h) if h.delimiter() == g.delimiter() => {
                                Some((*m, h.stream()))
                            }
                            _ => None,
                        })
                        .collect();
                    let merged = self.tokens(&inner?)?;
                    let mut ng = Group::new(g.delimiter(), merged);
                    ng.set_span(g.span());
                    out.extend([TokenTree::Group(ng)]);
                }
                TokenTree::Literal(l) => {
                    let texts: Vec<String> =
                        trees.iter().map(|(_, t)| t[pos].to_string()).collect();
                    if trees
                        .iter()
                        .any(|(_, t)| !matches!(t[pos], TokenTree::Literal(_)))
                    {
                        return None;
                    }
                    if texts.iter().all(|t| *t == texts[0]) {
                        out.extend([TokenTree::Literal(l.clone())]);
                        continue;
                    }
                    let ints: Option<Vec<u64>> = texts
                        .iter()
                        .map(|t| t.trim_end_matches("usize").parse().ok())
                        .collect();
                    let members: Vec<usize> = trees.iter().map(|(m, _)| *m).collect();
                    if let Some(ints) = &ints {
                        if let Some(named) =
                            self.names.int(&members, ints, texts[0].ends_with("usize"))
                        {
                            out.extend(named);
                            continue;
                        }
                    }
                    if let Some(ints) = ints {
                        let k = Literal::usize_unsuffixed(hole(
                            &mut self.ints,
                            self.members,
                            &members,
                            ints,
                        ));
                        if texts[0].ends_with("usize") {
                            out.extend(quote!(self.cfg[#k]));
                        } else {
                            out.extend(quote!((self.cfg[#k] as _)));
                        }
                        continue;
                    }
                    let floats: Vec<f64> = texts
                        .iter()
                        .map(|t| {
                            t.trim_end_matches("f64")
                                .trim_end_matches("f32")
                                .parse()
                                .ok()
                        })
                        .collect::<Option<_>>()?;
                    if let Some(named) = self.names.float(&members, &floats) {
                        out.extend(named);
                        continue;
                    }
                    let k = hole(&mut self.floats, self.members, &members, floats);
                    let k = Literal::usize_unsuffixed(k);
                    out.extend(quote!((self.cff[#k] as _)));
                }
                other => {
                    let text = other.to_string();
                    if trees.iter().any(|(_, t)| t[pos].to_string() != text) {
                        return None;
                    }
                    out.extend([other.clone()]);
                }
            }
        }
        Some(out)
    }
}

/// The entry of `table` holding `values` (one per member of the group;
/// members outside it get the default), added if new: the same numbers twice
/// (a stride in the folded and the plain path) are one entry.
fn hole<T: Clone + Default + PartialEq>(
    table: &mut Vec<Vec<T>>,
    width: usize,
    members: &[usize],
    values: Vec<T>,
) -> usize {
    let mut row = vec![T::default(); width];
    for (&m, v) in members.iter().zip(values) {
        row[m] = v;
    }
    match table.iter().position(|r| *r == row) {
        Some(k) => k,
        None => {
            table.push(row);
            table.len() - 1
        }
    }
}

/// A field of a block struct: in every instance, or (`optional`) in some.
struct UnionField {
    ident: Ident,
    /// The field as one instance has it (its holder, members and absent
    /// members are the same in every instance).
    field: FieldIr,
    ty: TokenStream,
    optional: bool,
}

/// One struct of a block, shared by `members` (instance indices).
struct Class {
    ident: Ident,
    members: Vec<usize>,
    forward: TokenStream,
    fields: Vec<UnionField>,
    ints: Vec<Vec<u64>>,
    floats: Vec<Vec<f64>>,
    flags: Vec<Vec<bool>>,
    /// Fields named after the block's names, after the arrays in `data`.
    named: Vec<named::Named>,
    folds: usize,
}

/// Every block's structs, and which struct each instance became.
pub struct BlockCode {
    classes: Vec<Vec<Class>>,
    /// `(block, instance)` -> `(class, member position)`.
    class_of: std::collections::HashMap<(usize, usize), (usize, usize)>,
}

impl BlockCode {
    fn ident(&self, def: usize, instance: usize) -> Option<&Ident> {
        let (c, _) = self.class_of.get(&(def, instance))?;
        Some(&self.classes[def][*c].ident)
    }

    /// The numbers an instance is built with: its `cfg`, `cff` and branch
    /// flags, then per optional field whether it exists, and the nested
    /// blocks' numbers, in field order.
    fn data(&self, reg: &Registry, def: usize, instance: usize) -> Vec<u64> {
        let Some(&(c, pos)) = self.class_of.get(&(def, instance)) else {
            return Vec::new();
        };
        let class = &self.classes[def][c];
        let mut out: Vec<u64> = class.ints.iter().map(|v| v[pos]).collect();
        out.extend(class.floats.iter().map(|v| v[pos].to_bits()));
        out.extend(class.flags.iter().map(|v| u64::from(v[pos])));
        out.extend(class.named.iter().map(|n| n.values[pos]));
        let ir = &reg.instances[def][instance];
        for uf in &class.fields {
            let present = ir.fields.iter().find(|f| f.ident == uf.ident);
            if uf.optional {
                out.push(u64::from(present.is_some()));
            }
            if let Some(FieldIr {
                kind: FieldKind::Block { def, instance },
                ..
            }) = present
            {
                out.extend(self.data(reg, *def, *instance));
            }
        }
        out
    }
}

/// Groups every block's instances into as few structs as their code
/// allows (one, unless instances differ in more than numbers and `if`s),
/// and emits them.
pub fn emit_blocks(defs: &[crate::ast::BlockDef], reg: &Registry) -> (TokenStream, BlockCode) {
    let mut code = BlockCode {
        classes: (0..defs.len()).map(|_| Vec::new()).collect(),
        class_of: Default::default(),
    };
    let mut done = vec![false; defs.len()];
    for d in 0..defs.len() {
        group_block(defs, reg, d, &mut code, &mut done);
    }
    let mut tokens = TokenStream::new();
    for (d, classes) in code.classes.iter().enumerate() {
        for class in classes {
            let irs: Vec<&NetIr> = class
                .members
                .iter()
                .map(|&m| &reg.instances[d][m])
                .collect();
            let named: std::collections::HashSet<String> =
                class.named.iter().map(|n| n.ident.to_string()).collect();
            let data = |pos: usize| code.data(reg, d, class.members[pos]);
            let alone = alone::items(&defs[d], &class.ident, &irs, &named, &data);
            tokens.extend(block_struct(&defs[d], class, reg.instances[d].len(), alone));
        }
    }
    (tokens, code)
}

fn group_block(
    defs: &[crate::ast::BlockDef],
    reg: &Registry,
    d: usize,
    code: &mut BlockCode,
    done: &mut [bool],
) {
    if done[d] {
        return;
    }
    done[d] = true;
    let Some(instances) = reg.instances.get(d) else {
        return;
    };
    // Nested blocks first: a field's type is its instance's struct.
    for ir in instances {
        for f in &ir.fields {
            if let FieldKind::Block { def, .. } = f.kind {
                group_block(defs, reg, def, code, done);
            }
        }
    }
    let mut classes: Vec<Class> = Vec::new();
    // Usually every use fits one struct: try that first, then group greedily.
    let all: Vec<usize> = (0..instances.len()).collect();
    if let Some(class) = merge_class(defs, reg, d, &all, code, defs[d].name.clone()) {
        classes.push(class);
    }
    for i in 0..instances.len() {
        if classes.iter().any(|c| c.members.contains(&i)) {
            continue;
        }
        let mut placed = false;
        for class in classes.iter_mut() {
            let mut members = class.members.clone();
            members.push(i);
            if let Some(merged) = merge_class(defs, reg, d, &members, code, class.ident.clone()) {
                *class = merged;
                placed = true;
                break;
            }
        }
        if !placed {
            let ident = if classes.is_empty() {
                defs[d].name.clone()
            } else {
                // `Name2`, `Name3`, ..: the first not taken by another block.
                let mut k = classes.len() + 1;
                while defs
                    .iter()
                    .any(|b| b.name == format!("{}{k}", defs[d].name))
                {
                    k += 1;
                }
                format_ident!("{}{}", defs[d].name, k)
            };
            if let Some(class) = merge_class(defs, reg, d, &[i], code, ident) {
                classes.push(class);
            }
        }
    }
    for (c, class) in classes.iter().enumerate() {
        for (pos, &m) in class.members.iter().enumerate() {
            code.class_of.insert((d, m), (c, pos));
        }
    }
    code.classes[d] = classes;
}

fn merge_class(
    defs: &[crate::ast::BlockDef],
    reg: &Registry,
    d: usize,
    members: &[usize],
    code: &BlockCode,
    ident: Ident,
) -> Option<Class> {
    if members.is_empty() {
        return None;
    }
    let irs: Vec<&NetIr> = members.iter().map(|&m| &reg.instances[d][m]).collect();
    // The union of the instances' fields, in order.
    let mut order: Vec<(Ident, &FieldIr)> = Vec::new();
    for ir in &irs {
        let mut last: Option<usize> = None;
        for f in &ir.fields {
            match order.iter().position(|(i, _)| *i == f.ident) {
                Some(pos) => last = Some(pos),
                None => {
                    let at = last.map_or(0, |l| l + 1);
                    order.insert(at, (f.ident.clone(), f));
                    last = Some(at);
                }
            }
        }
    }
    let mut fields = Vec::new();
    let mut binds: std::collections::HashMap<(usize, bool), Vec<Ident>> = Default::default();
    for (ident, f) in &order {
        let ty = |f: &FieldIr| -> Option<TokenStream> {
            match f.kind {
                FieldKind::Block { def, instance } => {
                    let t = code.ident(def, instance)?;
                    Some(quote!(#t))
                }
                _ => Some(field_type(f)),
            }
        };
        let t = ty(f)?;
        let mut present = 0;
        for ir in &irs {
            if let Some(g) = ir.fields.iter().find(|g| g.ident == *ident) {
                present += 1;
                if ty(g)?.to_string() != t.to_string()
                    || g.params.len() != f.params.len()
                    || (matches!(f.kind, FieldKind::Layer(_)) && g.kind != f.kind)
                {
                    return None;
                }
            }
        }
        let optional = present < irs.len();
        if optional {
            let (id, taken) = *f.branch.last()?;
            binds.entry((id, taken)).or_default().push(ident.clone());
        }
        fields.push(UnionField {
            ident: ident.clone(),
            field: (*f).clone(),
            ty: t,
            optional,
        });
    }
    let env = CodeEnv {
        block: true,
        optional: fields
            .iter()
            .filter(|f| f.optional)
            .map(|f| f.ident.to_string())
            .collect(),
    };
    let pieces: Vec<Vec<Piece>> = irs
        .iter()
        .map(|ir| {
            let mut p = build_pieces(ir, &ir.segments, 0, &env);
            let out = &ir.values[ir.output];
            p.push(Piece::Code(quote!(::core::result::Result::Ok(#out))));
            p
        })
        .collect();
    let group: Vec<(usize, &[Piece])> = pieces
        .iter()
        .enumerate()
        .map(|(m, p)| (m, p.as_slice()))
        .collect();
    let reserved = fields
        .iter()
        .map(|f| f.ident.to_string())
        .chain(["cfg", "cff", "branches", "fusion"].map(String::from))
        .collect();
    let names = named::Names::new(
        irs.iter().map(|ir| ir.env.as_slice()).collect(),
        defs[d].body.as_ref(),
        reserved,
    );
    let mut merger = Merger {
        members: members.len(),
        ints: Vec::new(),
        floats: Vec::new(),
        flags: Vec::new(),
        binds: &binds,
        block: defs[d].name.to_string(),
        names,
    };
    let forward = merger.pieces(&group)?;
    Some(Class {
        ident,
        members: members.to_vec(),
        forward,
        fields,
        ints: merger.ints,
        floats: merger.floats,
        flags: merger.flags,
        named: merger.names.fields,
        folds: irs.iter().map(|ir| ir.folds).max().unwrap_or(0),
    })
}

fn block_struct(
    def: &crate::ast::BlockDef,
    class: &Class,
    uses: usize,
    alone: TokenStream,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let name = &class.ident;
    let vis = &def.vis;
    let attrs = &def.attrs;
    let input = &def.input;
    // Further tensor inputs, named as the block's values name them.
    let extra = def
        .params
        .iter()
        .filter(|p| p.kind == crate::ast::ParamKind::Tensor)
        .map(|p| Ident::new(&p.name.to_string(), Span::mixed_site()));
    let cx = cx_ident();
    let differ = match (
        class.named.is_empty(),
        class.ints.is_empty() && class.floats.is_empty() && class.flags.is_empty(),
    ) {
        (true, true) => ".",
        (false, true) => {
            "; the numbers that differ between uses are fields named after the block's names."
        }
        (true, false) => {
            "; the numbers that differ between uses are in `cfg`, `cff` and `branches`."
        }
        (false, false) => {
            "; the numbers that differ between uses are fields named after the block's names, \
             or in `cfg`, `cff` and `branches` where no name stands for them."
        }
    };
    let doc = format!(
        " Block `{}` (one struct for {} of its {uses} use{}): each use holds its own weights{differ}",
        def.name,
        class.members.len(),
        if uses == 1 { "" } else { "s" }
    );
    let (n_int, n_float, n_flag) = (
        Literal::usize_unsuffixed(class.ints.len()),
        Literal::usize_unsuffixed(class.floats.len()),
        Literal::usize_unsuffixed(class.flags.len()),
    );
    let folds = Literal::usize_unsuffixed(class.folds);
    let decls = class.fields.iter().map(|f| {
        let (id, ty) = (&f.ident, &f.ty);
        if f.optional {
            // Not `pub`: the weights' names follow the manifest, so a child
            // must not be removed or added after construction.
            quote!(#id: ::core::option::Option<#ty>,)
        } else {
            quote!(pub #id: #ty,)
        }
    });
    let builds = class.fields.iter().map(|f| {
        let (id, ty) = (&f.ident, &f.ty);
        let init = match f.field.kind {
            FieldKind::Block { .. } => quote!(#ty::__build(source, network, manifest, next, data)?),
            FieldKind::Layer(_) => {
                let exprs: Vec<TokenStream> = f
                    .field
                    .params
                    .iter()
                    .map(|_| quote!(#p::next_param(source, network, manifest, next)?))
                    .collect();
                holder_literal(&f.field, &exprs)
            }
        };
        if f.optional {
            quote! {
                let #id = if data.next().copied().unwrap_or(0) != 0 {
                    ::core::option::Option::Some(#init)
                } else {
                    ::core::option::Option::None
                };
            }
        } else {
            quote!(let #id = #init;)
        }
    });
    let idents = class.fields.iter().map(|f| &f.ident);
    let tensors = class.fields.iter().map(|f| {
        let id = &f.ident;
        let pushes = |base: TokenStream| -> TokenStream {
            match f.field.kind {
                FieldKind::Block { .. } => quote!(#base.__tensors(out);),
                FieldKind::Layer(_) => {
                    let ms = f.field.params.iter().map(|param| {
                        let at = member_access(base.clone(), &param.member, f.optional);
                        quote!(out.push(&#at);)
                    });
                    quote!(#(#ms)*)
                }
            }
        };
        if f.optional {
            let body = pushes(quote!(f));
            quote!(if let ::core::option::Option::Some(f) = &self.#id { #body })
        } else {
            pushes(quote!(self.#id))
        }
    });
    let vars = class.fields.iter().map(|f| {
        let id = &f.ident;
        let pushes = |base: TokenStream| -> TokenStream {
            match f.field.kind {
                FieldKind::Block { .. } => quote!(#base.__vars(out)?;),
                FieldKind::Layer(_) => {
                    let ms = f
                        .field
                        .params
                        .iter()
                        .filter(|param| param.init.trainable())
                        .map(|param| {
                            let at = member_access(base.clone(), &param.member, f.optional);
                            quote!(out.push(#p::var_of(&mut #at)?);)
                        });
                    quote!(#(#ms)*)
                }
            }
        };
        if f.optional {
            let body = pushes(quote!(f));
            quote!(if let ::core::option::Option::Some(f) = &mut self.#id { #body })
        } else {
            pushes(quote!(self.#id))
        }
    });
    let clears = class
        .fields
        .iter()
        .filter(|f| matches!(f.field.kind, FieldKind::Block { .. }))
        .map(|f| {
            let id = &f.ident;
            if f.optional {
                quote!(if let ::core::option::Option::Some(f) = &self.#id { f.__clear(); })
            } else {
                quote!(self.#id.__clear();)
            }
        });
    let forward = &class.forward;
    // The arrays only where some number has no name.
    let (arrays, reads, inits) = {
        let mut arrays = TokenStream::new();
        let mut reads = TokenStream::new();
        let mut inits = TokenStream::new();
        if !class.ints.is_empty() {
            arrays.extend(quote!(cfg: [usize; #n_int],));
            reads.extend(quote!(let cfg: [usize; #n_int] = ::core::array::from_fn(|_| data.next().copied().unwrap_or(0) as usize);));
            inits.extend(quote!(cfg,));
        }
        if !class.floats.is_empty() {
            arrays.extend(quote!(cff: [f64; #n_float],));
            reads.extend(quote!(let cff: [f64; #n_float] = ::core::array::from_fn(|_| f64::from_bits(data.next().copied().unwrap_or(0)));));
            inits.extend(quote!(cff,));
        }
        if !class.flags.is_empty() {
            arrays.extend(quote!(branches: [bool; #n_flag],));
            reads.extend(quote!(let branches: [bool; #n_flag] = ::core::array::from_fn(|_| data.next().copied().unwrap_or(0) != 0);));
            inits.extend(quote!(branches,));
        }
        for n in &class.named {
            let (id, ty, decode) = (&n.ident, n.ty_tokens(), n.decode());
            let doc = format!(" `{id}` of this use of `{}`.", def.name);
            arrays.extend(quote!(#[doc = #doc] pub #id: #ty,));
            reads.extend(quote!(let #id: #ty = #decode;));
            inits.extend(quote!(#id,));
        }
        (arrays, reads, inits)
    };
    quote! {
        #(#attrs)*
        #[doc = #doc]
        #[derive(Debug, Clone)]
        #[allow(non_snake_case)]
        #vis struct #name {
            #(#decls)*
            #arrays
            fusion: #p::Fusion,
        }

        #[allow(dead_code, unused_variables, non_snake_case, clippy::all)]
        impl #name {
            #alone

            /// Runs the block; `cx` carries the network's mode.
            pub fn forward(&self, #input: &#p::Tensor, #(#extra: &#p::Tensor,)* #cx: &#p::BlockCx<'_>) -> #p::Result<#p::Tensor> {
                #forward
            }

            #[doc(hidden)]
            pub fn __build(
                source: &mut impl #p::ParamSource,
                network: &'static str,
                manifest: &[#p::ParamSpec],
                next: &mut usize,
                data: &mut ::core::slice::Iter<'_, u64>,
            ) -> #p::Result<Self> {
                #reads
                #(#builds)*
                ::core::result::Result::Ok(Self { #(#idents,)* #inits fusion: #p::Fusion::new(#folds) })
            }

            #[doc(hidden)]
            pub fn __tensors<'a>(&'a self, out: &mut ::std::vec::Vec<&'a #p::Tensor>) {
                #(#tensors)*
            }

            #[doc(hidden)]
            pub fn __vars(&mut self, out: &mut ::std::vec::Vec<#p::Var>) -> #p::Result<()> {
                #(#vars)*
                ::core::result::Result::Ok(())
            }

            #[doc(hidden)]
            pub fn __clear(&self) {
                self.fusion.clear();
                #(#clears)*
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(member: &'static str) -> crate::lower::ParamIr {
        crate::lower::ParamIr {
            member: member.to_string(),
            name: format!("attn.{member}"),
            shape: vec![4],
            init: InitIr::Zeros,
        }
    }

    fn field(holder: Holder, members: &[&'static str], absent: Vec<&'static str>) -> FieldIr {
        FieldIr {
            ident: Ident::new("attn", Span::call_site()),
            kind: FieldKind::Layer(holder),
            params: members.iter().map(|m| param(m)).collect(),
            absent,
            branch: Vec::new(),
        }
    }

    fn squash(t: TokenStream) -> String {
        t.to_string().replace(' ', "")
    }

    #[test]
    fn a_dotted_member_builds_its_sub_holder() {
        let holder = Holder::new("MultiheadAttentionParams")
            .with_sub("out_proj", "LinearParams")
            .with_sub("out_proj.inner", "NormParams");
        let f = field(
            holder,
            &["in_proj_weight", "out_proj.weight", "out_proj.inner.weight"],
            vec!["out_proj.bias"],
        );
        let exprs: Vec<TokenStream> = ["a", "b", "c"]
            .iter()
            .map(|s| {
                let i = Ident::new(s, Span::call_site());
                quote!(#i)
            })
            .collect();
        let p = "::netdsl::__private::layers::";
        assert_eq!(
            squash(holder_literal(&f, &exprs)),
            format!(
                "{p}MultiheadAttentionParams{{in_proj_weight:a,out_proj:{p}LinearParams{{\
                 weight:b,inner:{p}NormParams{{weight:c,}},bias:{p}NoBias,}},}}"
            )
        );
        assert_eq!(
            squash(member_access(
                quote!(self.attn),
                "out_proj.inner.weight",
                false
            )),
            "self.attn.out_proj.inner.weight"
        );
    }

    #[test]
    fn texts_are_raw_literals_that_keep_their_lines() {
        let t = text_literal("a\n  b \"q\"#\n");
        assert_eq!(t.to_string(), "r##\"a\n  b \"q\"#\n\"##");
        let lit: syn::LitStr = syn::parse2(t).expect("a string literal");
        assert_eq!(lit.value(), "a\n  b \"q\"#\n");
        let cr: syn::LitStr = syn::parse2(text_literal("a\r\nb")).expect("a string literal");
        assert_eq!(cr.value(), "a\r\nb");
    }

    #[test]
    fn a_bare_tensor_field_is_its_tensor() {
        let f = field(Holder::tensor(), &[""], Vec::new());
        let x = quote!(loaded);
        assert_eq!(squash(holder_literal(&f, &[x])), "loaded");
        assert_eq!(squash(field_type(&f)), "::netdsl::__private::Tensor");
        assert_eq!(squash(member_access(quote!(f), "", true)), "(*f)");
        assert_eq!(squash(member_access(quote!(self.t), "", false)), "self.t");
    }

    #[test]
    fn a_sub_layer_without_a_holder_is_an_error_not_a_panic() {
        let f = field(Holder::new("LinearParams"), &["proj.weight"], Vec::new());
        let out = holder_literal(&f, &[quote!(w)]).to_string();
        assert!(
            out.contains("no holder type for the sub-layer `proj`"),
            "{out}"
        );
    }
}
