//! IR to Rust: one struct per network, with PyTorch state_dict names, a
//! constructor per parameter source, and a straight-line `forward` whose
//! shapes are literals. Emit cannot fail: everything was checked before.
//!
//! When a network has errors, [`stub`] emits the same items with bodies that
//! are never run, so user code that names the network compiles and the user
//! sees only the real mistakes.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Attribute, Visibility};

use crate::lower::{FieldIr, FieldKind, InitIr, NetIr, StepIr, StepOp};
use crate::resolve::{Activation, PoolKind};
use crate::shape::{fmt_shape, Dim};

fn lit(n: u64) -> Literal {
    Literal::u64_unsuffixed(n)
}

fn usize_lit(n: u64) -> Literal {
    Literal::usize_suffixed(n as usize)
}

/// Items emitted for every network, real or stub.
struct Skeleton<'a> {
    attrs: &'a [Attribute],
    vis: &'a Visibility,
    name: &'a Ident,
    fields: TokenStream,
    consts: TokenStream,
    /// Bodies of `from_source`, `named_tensors`, `forward`.
    bodies: [TokenStream; 3],
    input: Ident,
}

fn skeleton(s: Skeleton) -> TokenStream {
    let Skeleton {
        attrs,
        vis,
        name,
        fields,
        consts,
        bodies: [from_source, named_tensors, forward],
        input,
    } = s;
    let p = quote!(::netdsl::__private);
    quote! {
        #(#attrs)*
        #[derive(Debug, Clone)]
        #vis struct #name { #fields }

        #[allow(dead_code)]
        impl #name {
            #consts

            /// A network with PyTorch's default initialisation, from a fresh random seed.
            pub fn new(device: &#p::Device) -> #p::Result<Self> {
                Self::from_source(&mut #p::Initializer::from_entropy(device))
            }

            /// A network with PyTorch's default initialisation; the same seed gives the same weights.
            pub fn new_seeded(seed: u64, device: &#p::Device) -> #p::Result<Self> {
                Self::from_source(&mut #p::Initializer::seeded(seed, device))
            }

            /// Loads PyTorch state_dict tensors from a safetensors file; every missing,
            /// unexpected or mis-shaped tensor is reported in one error.
            pub fn load(path: impl ::core::convert::AsRef<::std::path::Path>, device: &#p::Device) -> #p::Result<Self> {
                let mut weights = #p::load_weights(Self::NAME, path, Self::MANIFEST, device)?;
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

            /// Runs the network. The input's shape is checked first.
            #[allow(unused_doc_comments)]
            pub fn forward(&self, #input: &#p::Tensor) -> #p::Result<#p::Tensor> {
                #forward
            }
        }
    }
}

fn consts(
    name: &Ident,
    input: &str,
    output: &str,
    summary: &str,
    parameters: u64,
    manifest: TokenStream,
) -> TokenStream {
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
        /// The number of trainable parameters (buffers excluded).
        pub const PARAMETERS: usize = #parameters;
        /// Every tensor of the state_dict: PyTorch name, shape, dtype, initialisation.
        pub const MANIFEST: &'static [#p::ParamSpec] = &[#manifest];
    }
}

pub fn emit(ir: &NetIr) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let mut attrs = ir.attrs.clone();
    let has_docs = attrs.iter().any(|a| a.path().is_ident("doc"));
    let doc = format!(
        "{}# Summary\n\n```text\n{}```",
        if has_docs { "\n" } else { "" },
        ir.summary
    );
    attrs.push(syn::parse_quote!(#[doc = #doc]));

    let fields = ir.fields.iter().map(|f| {
        let name = &f.name;
        let ty = match f.kind {
            FieldKind::Conv2d => quote!(#p::layers::Conv2dParams),
            FieldKind::Linear => quote!(#p::layers::LinearParams),
        };
        let ty = if f.has_bias() {
            ty
        } else {
            quote!(#ty<#p::layers::NoBias>)
        };
        let doc = f
            .params
            .iter()
            .map(|p| format!("`{}` {:?}", p.name, p.shape))
            .collect::<Vec<_>>()
            .join(", ");
        quote!(#[doc = #doc] pub #name: #ty,)
    });
    let manifest = ir.fields.iter().flat_map(|f| &f.params).map(|param| {
        let name = &param.name;
        let shape = param.shape.iter().map(|&d| lit(d));
        let (ctor, fan_in) = match param.init {
            InitIr::KaimingUniform { fan_in } => (quote!(weight), fan_in),
            InitIr::BiasUniform { fan_in } => (quote!(bias), fan_in),
        };
        let fan_in = lit(fan_in);
        quote!(#p::ParamSpec::#ctor(#name, &[#(#shape),*], #fan_in),)
    });
    let consts = consts(
        &ir.name,
        &fmt_shape(&ir.input_shape),
        &fmt_shape(&ir.output_shape),
        &ir.summary,
        ir.parameters,
        quote!(#(#manifest)*),
    );

    let mut index = 0usize;
    let inits = ir.fields.iter().map(|f| gen_field_init(f, &mut index));
    let from_source = quote! {
        let manifest = Self::MANIFEST;
        ::core::result::Result::Ok(Self { #(#inits)* })
    };
    let named = ir.fields.iter().flat_map(|f| {
        let field = &f.name;
        f.params.iter().enumerate().map(move |(i, param)| {
            let name = &param.name;
            let member = if i == 0 { quote!(weight) } else { quote!(bias) };
            quote!((#name, &self.#field.#member))
        })
    });
    let named_tensors = quote!(::std::vec![#(#named),*]);

    skeleton(Skeleton {
        attrs: &attrs,
        vis: &ir.vis,
        name: &ir.name,
        fields: quote!(#(#fields)*),
        consts,
        bodies: [from_source, named_tensors, gen_forward(ir)],
        input: ir.input.clone(),
    })
}

fn gen_field_init(f: &FieldIr, index: &mut usize) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let name = &f.name;
    let ty = match f.kind {
        FieldKind::Conv2d => quote!(#p::layers::Conv2dParams),
        FieldKind::Linear => quote!(#p::layers::LinearParams),
    };
    let w = Literal::usize_unsuffixed(*index);
    *index += 1;
    let bias = if f.has_bias() {
        let b = Literal::usize_unsuffixed(*index);
        *index += 1;
        quote!(source.take(&manifest[#b])?)
    } else {
        quote!(#p::layers::NoBias)
    };
    quote!(#name: #ty { weight: source.take(&manifest[#w])?, bias: #bias },)
}

fn gen_forward(ir: &NetIr) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let input = &ir.input;
    let name = ir.name.to_string();
    let expected = fmt_shape(&ir.input_shape);
    let dims = ir.input_shape.iter().map(|d| match d {
        Dim::Known(n) => {
            let n = usize_lit(*n);
            quote!(#p::InputDim::Fixed(#n))
        }
        Dim::Sym(s) => quote!(#p::InputDim::Sym(#s)),
    });
    let x = format_ident!("xs", span = Span::mixed_site());
    let mut body = quote! {
        #p::check_input(#name, #expected, #input, &[#(#dims),*])?;
    };
    if ir.steps.is_empty() {
        body.extend(quote!(::core::result::Result::Ok(#input.clone())));
        return body;
    }
    for (i, step) in ir.steps.iter().enumerate() {
        let src = if i == 0 { quote!(#input) } else { quote!(#x) };
        body.extend(gen_step(step, &src, &x));
    }
    body.extend(quote!(::core::result::Result::Ok(#x)));
    body
}

fn gen_step(step: &StepIr, src: &TokenStream, x: &Ident) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let comment = format!(" {}", step.comment);
    let code = match &step.op {
        StepOp::Conv2d {
            field,
            pad,
            stride,
            dilation,
            groups,
            out_ch,
            bias,
        } => {
            let ((top, bottom), (left, right)) = *pad;
            let symmetric = top == bottom && left == right && top == left;
            let mut code = TokenStream::new();
            let mut src = src.clone();
            let padding = if symmetric {
                lit(top)
            } else {
                let (t, b, l, r) = (
                    usize_lit(top),
                    usize_lit(bottom),
                    usize_lit(left),
                    usize_lit(right),
                );
                code.extend(quote! {
                    let #x = #src.pad_with_zeros(2, #t, #b)?.pad_with_zeros(3, #l, #r)?;
                });
                src = quote!(#x);
                lit(0)
            };
            let (d, g) = (lit(*dilation), lit(*groups));
            if stride.0 == stride.1 {
                let s = lit(stride.0);
                code.extend(quote! {
                    let #x = #src.conv2d(&self.#field.weight, #padding, #s, #d, #g)?;
                });
            } else {
                let (sh, sw) = (usize_lit(stride.0), usize_lit(stride.1));
                code.extend(quote! {
                    let #x = #src.conv2d(&self.#field.weight, #padding, 1, #d, #g)?;
                    let #x = #p::subsample(&#x, #sh, #sw)?;
                });
            }
            if *bias {
                let c = usize_lit(*out_ch);
                code.extend(quote! {
                    let #x = #x.broadcast_add(&self.#field.bias.reshape((1, #c, 1, 1))?)?;
                });
            }
            code
        }
        StepOp::Pool2d {
            kind,
            kernel,
            stride,
        } => {
            let k = pair_tokens(*kernel);
            let s = pair_tokens(*stride);
            match kind {
                PoolKind::Max => quote!(let #x = #src.max_pool2d_with_stride(#k, #s)?;),
                PoolKind::Avg => quote!(let #x = #src.avg_pool2d_with_stride(#k, #s)?;),
            }
        }
        StepOp::Flatten { start, end, rank } => {
            let s = usize_lit(*start as u64);
            if *end + 1 == *rank {
                quote!(let #x = #src.flatten_from(#s)?;)
            } else {
                let e = usize_lit(*end as u64);
                quote!(let #x = #src.flatten(#s, #e)?;)
            }
        }
        StepOp::Linear { field, bias, rank } => {
            let mut code = if *rank == 2 {
                quote!(let #x = #src.matmul(&self.#field.weight.t()?)?;)
            } else {
                quote!(let #x = #src.broadcast_matmul(&self.#field.weight.t()?)?;)
            };
            if *bias {
                code.extend(quote!(let #x = #x.broadcast_add(&self.#field.bias)?;));
            }
            code
        }
        StepOp::Act(Activation::Relu) => quote!(let #x = #src.relu()?;),
        StepOp::Act(Activation::Tanh) => quote!(let #x = #src.tanh()?;),
        StepOp::Act(Activation::Sigmoid) => quote!(let #x = #p::candle_nn::ops::sigmoid(&#src)?;),
        StepOp::Softmax { dim, log } => {
            let d = usize_lit(*dim as u64);
            if *log {
                quote!(let #x = #p::candle_nn::ops::log_softmax(&#src, #d)?;)
            } else {
                quote!(let #x = #p::candle_nn::ops::softmax(&#src, #d)?;)
            }
        }
    };
    quote! {
        #[doc = #comment]
        #code
    }
}

fn pair_tokens((a, b): (u64, u64)) -> TokenStream {
    let (a, b) = (usize_lit(a), usize_lit(b));
    quote!((#a, #b))
}

/// The same items as [`emit`] for a network with errors: bodies never run
/// (the crate does not compile), signatures match, so the user's own code
/// that uses the network raises no follow-on errors.
pub fn stub(attrs: &[Attribute], vis: &Visibility, name: &Ident, input: &Ident) -> TokenStream {
    let unreachable = quote!(::core::unreachable!("this network has compile errors"));
    skeleton(Skeleton {
        attrs,
        vis,
        name,
        fields: TokenStream::new(),
        consts: consts(name, "", "", "", 0, TokenStream::new()),
        bodies: [
            unreachable.clone(),
            unreachable.clone(),
            quote!(let _ = #input; #unreachable),
        ],
        input: input.clone(),
    })
}
