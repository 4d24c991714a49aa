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

use crate::ast::BinOp;
use crate::lower::{FieldIr, FieldKind, Fold, InitIr, MergeIr, NetIr, Segment, StepIr, StepOp};
use crate::resolve::{Activation, PoolKind, WeightInit};
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
    /// Bodies of `from_source`, `named_tensors`, `forward`, `named_vars`.
    bodies: [TokenStream; 4],
    input: Ident,
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
    } = s;
    let p = quote!(::netdsl::__private);
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
            }

            /// Inference mode, as PyTorch's `eval()` (the default): parameters are used detached,
            /// dropout is off, batch norm uses its running statistics, fusions are recomputed.
            pub fn eval(&mut self) {
                self.training = false;
                self.fusion.clear();
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

            /// Runs the network. The input's shape is checked first.
            #[allow(unused_doc_comments)]
            pub fn forward(&self, #input: &#p::Tensor) -> #p::Result<#p::Tensor> {
                #forward
            }
        }
    }
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
) -> TokenStream {
    let (mermaid, dot) = graph;
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
    }
}

pub fn emit(ir: &NetIr) -> TokenStream {
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
        let ty = field_type(f);
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
        }
    });
    let consts = consts(
        &ir.name,
        &fmt_shape(&ir.input_shape),
        &fmt_shape(&ir.output_shape),
        &ir.summary,
        &ir.fusions.join("\n"),
        (&ir.mermaid, &ir.dot),
        ir.parameters,
        quote!(#(#manifest)*),
    );

    let mut index = 0usize;
    let inits = ir.fields.iter().map(|f| gen_field_init(f, &mut index));
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
    let named = ir.fields.iter().flat_map(|f| {
        let field = &f.ident;
        f.params.iter().map(move |param| {
            let name = &param.name;
            let member = Ident::new(param.member, Span::call_site());
            quote!((#name, &self.#field.#member))
        })
    });
    let named_tensors = quote!(::std::vec![#(#named),*]);
    let vars = ir.fields.iter().flat_map(|f| {
        let field = &f.ident;
        let p = p.clone();
        f.params
            .iter()
            .filter(|param| param.init.trainable())
            .map(move |param| {
                let name = &param.name;
                let member = Ident::new(param.member, Span::call_site());
                quote!((#name, #p::var_of(&mut self.#field.#member)?))
            })
    });
    let named_vars = quote!(::core::result::Result::Ok(::std::vec![#(#vars),*]));

    skeleton(Skeleton {
        attrs: &attrs,
        vis: &ir.vis,
        name: &ir.name,
        fields: quote!(#(#fields)*),
        consts,
        bodies: [from_source, named_tensors, gen_forward(ir), named_vars],
        input: ir.input.clone(),
    })
}

fn bullet_list(lines: &[String]) -> String {
    lines.iter().map(|l| format!("- {l}\n")).collect()
}

/// The runtime's parameter holder for a kind of layer.
fn field_base_type(kind: FieldKind) -> TokenStream {
    let p = quote!(::netdsl::__private);
    match kind {
        FieldKind::Conv2d | FieldKind::ConvTranspose2d => quote!(#p::layers::Conv2dParams),
        FieldKind::Linear => quote!(#p::layers::LinearParams),
        FieldKind::BatchNorm => quote!(#p::layers::BatchNormParams),
    }
}

fn field_type(f: &FieldIr) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let base = field_base_type(f.kind);
    if f.absent.is_empty() {
        base
    } else {
        quote!(#base<#p::layers::NoBias>)
    }
}

fn gen_field_init(f: &FieldIr, index: &mut usize) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let name = &f.ident;
    let ty = field_base_type(f.kind);
    let present = f.params.iter().map(|param| {
        let member = Ident::new(param.member, Span::call_site());
        let i = Literal::usize_unsuffixed(*index);
        *index += 1;
        quote!(#member: #p::make_var(#p::take(source, Self::NAME, &manifest[#i])?)?,)
    });
    let present: Vec<TokenStream> = present.collect();
    let absent = f.absent.iter().map(|m| {
        let member = Ident::new(m, Span::call_site());
        quote!(#member: #p::layers::NoBias,)
    });
    quote!(#name: #ty { #(#present)* #(#absent)* },)
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
    let value = |v: usize| {
        let id = &ir.values[v];
        quote!(#id)
    };
    for segment in &ir.segments {
        match segment {
            Segment::Chain { src, dst, steps } => {
                let mut code = TokenStream::new();
                let mut first = true;
                for step in steps {
                    let from = if first { value(*src) } else { quote!(#x) };
                    if let Some(c) = gen_step(step, &from, &x) {
                        code.extend(c);
                        first = false;
                    }
                }
                let (src, dst) = (value(*src), &ir.values[*dst]);
                if ir.segments.len() == 1 && ir.output == ir.values.len() - 1 {
                    // A plain chain: the steps straight in `forward`.
                    body.extend(code);
                    let out = if first {
                        quote!(#src.clone())
                    } else {
                        quote!(#x)
                    };
                    body.extend(quote!(::core::result::Result::Ok(#out)));
                    return body;
                } else if first {
                    body.extend(quote!(let #dst = #src.clone();));
                } else {
                    body.extend(quote!(let #dst = { #code #x };));
                }
            }
            Segment::Merge {
                kind,
                inputs,
                dst,
                comment,
            } => {
                let dst = &ir.values[*dst];
                let args: Vec<TokenStream> = inputs.iter().map(|&v| value(v)).collect();
                let comment = format!(" {comment}");
                let code = match kind {
                    MergeIr::Cat { dim } => {
                        let d = usize_lit(*dim as u64);
                        quote!(let #dst = #p::Tensor::cat(&[#(&#args),*], #d)?;)
                    }
                    MergeIr::Crop { h, w } => {
                        let (a, h, w) = (&args[0], usize_lit(*h), usize_lit(*w));
                        quote!(let #dst = #p::center_crop(&#a, #h, #w)?;)
                    }
                    MergeIr::Binary(op) => {
                        let (a, b) = (&args[0], &args[1]);
                        let f = match op {
                            BinOp::Add => quote!(broadcast_add),
                            BinOp::Sub => quote!(broadcast_sub),
                            BinOp::Mul => quote!(broadcast_mul),
                        };
                        quote!(let #dst = #a.#f(&#b)?;)
                    }
                };
                body.extend(quote! {
                    #[doc = #comment]
                    #code
                });
            }
        }
    }
    let out = value(ir.output);
    body.extend(quote!(::core::result::Result::Ok(#out)));
    body
}

/// The runtime's convolution on `src`: any stride, padding, dilation and
/// groups natively, bias and an activation applied in its epilogue.
#[allow(clippy::too_many_arguments)]
fn conv_call(
    src: &TokenStream,
    x: &Ident,
    w: TokenStream,
    bias: Option<TokenStream>,
    pad: ((u64, u64), (u64, u64)),
    stride: (u64, u64),
    dilation: (u64, u64),
    groups: u64,
    act: Option<Activation>,
) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let ((top, bottom), (left, right)) = pad;
    let (t, b, l, r) = (
        usize_lit(top),
        usize_lit(bottom),
        usize_lit(left),
        usize_lit(right),
    );
    let (st, dl, g) = (
        pair_tokens(stride),
        pair_tokens(dilation),
        usize_lit(groups),
    );
    let bias = match bias {
        Some(b) => quote!(::core::option::Option::Some(&#b)),
        None => quote!(::core::option::Option::None),
    };
    let epilogue = match act {
        None => quote!(None),
        Some(Activation::Relu) => quote!(Relu),
        Some(Activation::LeakyRelu(s)) => {
            let s = Literal::f32_unsuffixed(s as f32);
            quote!(LeakyRelu(#s))
        }
        Some(Activation::Gelu { .. }) => quote!(Gelu),
        Some(Activation::Silu) => quote!(Silu),
        Some(_) => quote!(Sigmoid),
    };
    quote! {
        let #x = #p::conv2d(
            &#src,
            &#w,
            #bias,
            &#p::Conv2dSpec { stride: #st, padding: ((#t, #b), (#l, #r)), dilation: #dl, groups: #g },
            #p::Epilogue::#epilogue,
        )?;
    }
}

/// `fold` weights of `field` with batch norm `fold.bn`, from the cache.
fn folded_weights(field: &Ident, fold: &Fold) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let bn = &fold.bn;
    let slot = usize_lit(fold.slot as u64);
    let eps = Literal::f64_unsuffixed(fold.eps);
    let mut sources = vec![quote!(&self.#field.weight)];
    if fold.layer_bias {
        sources.push(quote!(&self.#field.bias));
    }
    if fold.affine {
        sources.extend([quote!(&self.#bn.weight), quote!(&self.#bn.bias)]);
    }
    sources.extend([
        quote!(&self.#bn.running_mean),
        quote!(&self.#bn.running_var),
    ]);
    quote! {
        let (weight, bias) = self.fusion.get(
            #slot,
            &[#(#sources),*],
            || #p::bn_fold(&self.#field.weight, &self.#field.bias, &self.#bn, #eps),
        )?;
    }
}

fn gen_step(step: &StepIr, src: &TokenStream, x: &Ident) -> Option<TokenStream> {
    let p = quote!(::netdsl::__private);
    let comment = format!(" {}", step.comment());
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
            ..
        } => {
            let weight = quote!(#p::param(&self.#field.weight, self.training));
            let plain_bias = bias.then(|| quote!(#p::param(&self.#field.bias, self.training)));
            match fold {
                None => conv_call(
                    src, x, weight, plain_bias, *pad, *stride, *dilation, *groups, *epilogue,
                ),
                Some(fold) => {
                    let bn = &fold.bn;
                    let eps = Literal::f64_unsuffixed(fold.eps);
                    let momentum = Literal::f64_unsuffixed(fold.momentum);
                    let weights = folded_weights(field, fold);
                    let folded = conv_call(
                        src,
                        x,
                        quote!(weight),
                        Some(quote!(bias)),
                        *pad,
                        *stride,
                        *dilation,
                        *groups,
                        *epilogue,
                    );
                    let plain = conv_call(
                        src, x, weight, plain_bias, *pad, *stride, *dilation, *groups, None,
                    );
                    let act = epilogue
                        .map(|a| act_code(a, &quote!(#x), x))
                        .unwrap_or_default();
                    quote! {
                        let #x = if self.fusion.enabled() && !self.training {
                            #weights
                            #folded
                            #x
                        } else {
                            #plain
                            let #x = #p::batch_norm(&#x, &self.#bn, #eps, #momentum, self.training)?;
                            #act
                            #x
                        };
                    }
                }
            }
        }
        StepOp::Pool2d {
            kind,
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
            count_include_pad,
        } => {
            // The runtime's pooling takes candle's kernel when that is exact and no
            // gradient is needed, and differentiable composed ops otherwise
            // (candle's max-pool backward is wrong).
            let (k, st, pd, dl) = (
                pair_tokens(*kernel),
                pair_tokens(*stride),
                pair_tokens(*padding),
                pair_tokens(*dilation),
            );
            let f = match kind {
                PoolKind::Max => quote!(max_pool2d),
                PoolKind::Avg => quote!(avg_pool2d),
            };
            quote! {
                let #x = #p::#f(&#src, &#p::Pool2d {
                    kernel: #k,
                    stride: #st,
                    padding: #pd,
                    dilation: #dl,
                    ceil_mode: #ceil_mode,
                    count_include_pad: #count_include_pad,
                })?;
            }
        }
        StepOp::ConvTranspose2d {
            field,
            stride,
            padding,
            output_padding,
            dilation,
            groups,
            bias,
        } => {
            let (st, pd, op, dl) = (
                pair_tokens(*stride),
                pair_tokens(*padding),
                pair_tokens(*output_padding),
                pair_tokens(*dilation),
            );
            let g = usize_lit(*groups);
            let bias = if *bias {
                quote!(::core::option::Option::Some(&#p::param(&self.#field.bias, self.training)))
            } else {
                quote!(::core::option::Option::None)
            };
            quote! {
                let #x = #p::conv_transpose2d(
                    &#src,
                    &#p::param(&self.#field.weight, self.training),
                    #bias,
                    &#p::ConvTranspose2dSpec { stride: #st, padding: #pd, output_padding: #op, dilation: #dl, groups: #g },
                )?;
            }
        }
        StepOp::Upsample {
            out,
            bilinear,
            align_corners,
        } => {
            let o = pair_tokens(*out);
            if *bilinear {
                quote!(let #x = #p::upsample_bilinear2d(&#src, #o, #align_corners)?;)
            } else {
                quote!(let #x = #p::upsample_nearest2d(&#src, #o)?;)
            }
        }
        StepOp::PixelShuffle { r } => {
            let r = usize_lit(*r);
            quote!(let #x = #p::pixel_shuffle(&#src, #r)?;)
        }
        StepOp::AdaptivePool2d { kind, out } => {
            let o = pair_tokens(*out);
            match kind {
                PoolKind::Max => quote!(let #x = #p::adaptive_max_pool2d(&#src, #o)?;),
                PoolKind::Avg => quote!(let #x = #p::adaptive_avg_pool2d(&#src, #o)?;),
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
        StepOp::Linear {
            field,
            bias,
            rank,
            fold,
        } => {
            let matmul = |w: TokenStream| {
                if *rank == 2 {
                    quote!(let #x = #src.matmul(&#w.t()?)?;)
                } else {
                    quote!(let #x = #src.broadcast_matmul(&#w.t()?)?;)
                }
            };
            let mut plain = matmul(quote!(#p::param(&self.#field.weight, self.training)));
            if *bias {
                plain.extend(quote!(let #x = #x.broadcast_add(&#p::param(&self.#field.bias, self.training))?;));
            }
            match fold {
                None => plain,
                Some(fold) => {
                    let bn = &fold.bn;
                    let eps = Literal::f64_unsuffixed(fold.eps);
                    let momentum = Literal::f64_unsuffixed(fold.momentum);
                    let weights = folded_weights(field, fold);
                    let mm = matmul(quote!(weight));
                    quote! {
                        let #x = if self.fusion.enabled() && !self.training {
                            #weights
                            #mm
                            #x.broadcast_add(&bias)?
                        } else {
                            #plain
                            #p::batch_norm(&#x, &self.#bn, #eps, #momentum, self.training)?
                        };
                    }
                }
            }
        }
        StepOp::BatchNorm { folded: true, .. } => return None,
        StepOp::Dropout { p: rate } => {
            let rate = Literal::f64_unsuffixed(*rate);
            quote! {
                let #x = if self.training {
                    #p::dropout(&#src, #rate, &self.rng)?
                } else {
                    #src.clone()
                };
            }
        }
        StepOp::BatchNorm {
            field,
            eps,
            momentum,
            folded: false,
            ..
        } => {
            let eps = Literal::f64_unsuffixed(*eps);
            let momentum = Literal::f64_unsuffixed(*momentum);
            quote!(let #x = #p::batch_norm(&#src, &self.#field, #eps, #momentum, self.training)?;)
        }
        StepOp::Act(a) => act_code(*a, src, x),
        StepOp::Softmax { dim, log } => {
            let d = usize_lit(*dim as u64);
            if *log {
                quote!(let #x = #p::candle_nn::ops::log_softmax(&#src, #d)?;)
            } else {
                quote!(let #x = #p::candle_nn::ops::softmax(&#src, #d)?;)
            }
        }
    };
    Some(quote! {
        #[doc = #comment]
        #code
    })
}

/// `let x = act(src);`
fn act_code(a: Activation, src: &TokenStream, x: &Ident) -> TokenStream {
    let p = quote!(::netdsl::__private);
    match a {
        Activation::Relu => quote!(let #x = #src.relu()?;),
        Activation::Tanh => quote!(let #x = #src.tanh()?;),
        Activation::Sigmoid => quote!(let #x = #p::candle_nn::ops::sigmoid(&#src)?;),
        Activation::LeakyRelu(slope) => {
            let s = Literal::f64_unsuffixed(slope);
            quote!(let #x = #p::candle_nn::ops::leaky_relu(&#src, #s)?;)
        }
        Activation::Gelu { tanh: false } => quote!(let #x = #src.gelu_erf()?;),
        Activation::Gelu { tanh: true } => quote!(let #x = #src.gelu()?;),
        Activation::Silu => quote!(let #x = #src.silu()?;),
        Activation::Relu6 => quote!(let #x = #p::relu6(&#src)?;),
        Activation::Hardswish => quote!(let #x = #p::hardswish(&#src)?;),
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
        consts: consts(name, "", "", "", "", ("", ""), 0, TokenStream::new()),
        bodies: [
            unreachable.clone(),
            unreachable.clone(),
            quote!(let _ = #input; #unreachable),
            unreachable.clone(),
        ],
        input: input.clone(),
    })
}
