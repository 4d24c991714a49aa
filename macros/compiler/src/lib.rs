//! The `network!` compiler as a plain library.
//!
//! A pipeline of small passes over plain data, one module each:
//! [`parse`] (tokens to AST, every node keeps its span) -> [`resolve`] (ops,
//! arguments, names, named values) -> [`infer`] (every tensor's shape, by
//! PyTorch's rules in [`shape`] and [`declared`] shapes, recording what does
//! not fit) -> [`check`] (reports it in order, with fixes) ->
//! [`lower`] (IR) -> [`passes`] (the fusion passes, one file each) ->
//! [`graph`] (Mermaid and DOT) -> [`emit`] (Rust tokens). [`expand`] runs
//! them in that order. Every error of one invocation is collected and
//! reported together, each at the tokens at fault, as a structured
//! [`Diagnostic`] rendered in one place.
//!
//! The proc-macro crate calls [`expand_or_errors`]; [`expand`] and
//! [`expand_pretty`] are public so users can snapshot-test what their
//! networks expand to.

pub mod ast;
pub mod block;
pub mod check;
pub mod declared;
pub mod diag;
pub mod emit;
pub mod graph;
pub mod imports;
pub mod infer;
pub mod lower;
pub mod ops;
pub mod parse;
pub mod passes;
pub mod resolve;
pub mod shape;

use proc_macro2::{Ident, TokenStream};

pub use diag::{Diagnostic, SpanRange};

/// The errors of one invocation, and the stub items that keep the user's
/// own code free of follow-on errors.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub errors: Vec<Diagnostic>,
    /// Items with the networks' real signatures and bodies that never run.
    pub fallback: TokenStream,
}

impl Diagnostics {
    /// `compile_error!`s at each error's span, followed by the stubs.
    pub fn to_compile_errors(&self) -> TokenStream {
        let mut out: TokenStream = self
            .errors
            .iter()
            .map(|e| e.to_syn().to_compile_error())
            .collect();
        out.extend(self.fallback.clone());
        out
    }
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {}", e.render())?;
        }
        Ok(())
    }
}

/// Expands the contents of a `network! { .. }` invocation: the pipeline.
pub fn expand(input: TokenStream) -> Result<TokenStream, Diagnostics> {
    let cx = diag::Ctxt::new();
    // `use path::Block;`: hand the invocation to the block's macro, which
    // hands it back with the block's tokens (see `imports`).
    if let Some(handed) = imports::hand_over(&input) {
        return handed.map_err(|e| {
            cx.syn_error(e);
            Diagnostics {
                errors: cx.into_errors(),
                fallback: TokenStream::new(),
            }
        });
    }
    // Parse: tokens to syntax tree, every node spanned.
    let mut spec = parse::parse(&cx, input);
    imports::dedup(&mut spec.blocks);
    let blocks = block::Blocks::new(&cx, &spec.blocks);
    blocks.check_definitions();
    check_names(&cx, &spec);
    // Per network: resolve (ops, arguments, names, named values), infer
    // every shape (block uses are instantiated there, each with its
    // arguments and input), check (report, with fixes), then lower to IR.
    let mut reg = lower::Registry::default();
    let mut irs = Vec::new();
    for net in &spec.networks {
        let before = cx.error_count();
        let mut env = resolve::input_env(&net.input_shape);
        for extra in &net.extra {
            env.extend(resolve::input_env(&extra.shape));
        }
        let program = resolve::resolve(&cx, net, &spec.blocks, &env);
        declared::check_input_shape(&cx, &net.input_shape);
        let mut inputs = vec![infer::shape_of(&net.input_shape)];
        let input_ids: Vec<bool> = std::iter::once(net.input_ids.is_some())
            .chain(net.extra.iter().map(|e| e.ids.is_some()))
            .collect();
        for extra in &net.extra {
            declared::check_input_shape(&cx, &extra.shape);
            inputs.push(infer::shape_of(&extra.shape));
        }
        // A strict network: the input sizes that lose nothing, for the
        // messages of the layers that do.
        if net.strict {
            let run = check::StrictRun {
                blocks: &blocks,
                input_name: &net.input,
                inputs: &inputs,
                program: &program,
                out_decl: net.output_shape.as_ref(),
                input_ids: &input_ids,
            };
            *blocks.strict_help.borrow_mut() = run.lossless_sizes();
        }
        blocks.strict.set(net.strict);
        // Infer every value's shape, recording what does not fit; then
        // report it, in order, with the fixes found.
        let shapes = infer::program(
            &blocks,
            &net.input,
            inputs,
            &program,
            net.output_shape.as_ref(),
            &program.env,
            true,
            "network",
            &input_ids,
        );
        check::report(
            &cx,
            &blocks,
            &program,
            &shapes,
            net.output_shape.as_ref(),
            &program.env,
            "network",
        );
        check::check_extra_outputs(
            &cx,
            &program,
            &shapes,
            &net.extra_output_shapes,
            &program.env,
        );
        if net.body.is_some() && cx.error_count() == before {
            irs.push(Ok(lower::lower(net, &program, &shapes, &blocks, &mut reg)));
        } else {
            irs.push(Err(net));
        }
        blocks.strict.set(false);
        *blocks.strict_help.borrow_mut() = None;
    }
    // Each used block's body on its own: its mistakes are reported even
    // where no use of it could be checked.
    blocks.check_bodies_alone(&spec.networks);
    // After other errors, an unused block is most likely a misspelt use.
    if cx.error_count() == 0 {
        blocks.check_unused(&spec.networks);
    }
    // The fusion passes, over the networks and every block instance.
    let mut lowered: Vec<&mut lower::NetIr> =
        irs.iter_mut().filter_map(|ir| ir.as_mut().ok()).collect();
    passes::run(&mut lowered, &mut reg);
    // The graphs as Mermaid and DOT, as the passes left them.
    for ir in lowered {
        let (mermaid, dot) = graph::render(ir, &ir.value_shapes);
        ir.mermaid = mermaid;
        ir.dot = dot;
    }
    // Emit: each network's struct (or, for one with errors, a stub with the
    // real signatures), then the blocks' structs.
    let (block_tokens, code) = emit::emit_blocks(&spec.blocks, &reg);
    let mut out = TokenStream::new();
    let mut fallback = TokenStream::new();
    for ir in &irs {
        match ir {
            Ok(ir) => {
                let tokens = emit::emit(ir, &code, &reg, &spec.blocks);
                out.extend(tokens.clone());
                fallback.extend(tokens);
            }
            Err(net) => {
                let extra: Vec<Ident> = net.extra.iter().map(|i| i.name.clone()).collect();
                let outputs = 1 + net.body.as_ref().map_or(0, |b| b.extra_outputs.len());
                fallback.extend(emit::stub(
                    &net.attrs, &net.vis, &net.name, &net.input, &extra, outputs,
                ));
            }
        }
    }
    out.extend(block_tokens.clone());
    fallback.extend(block_tokens);
    // The macros that hand the shared blocks to other invocations: even
    // with errors here, so those report their own mistakes, not a missing
    // macro.
    let exported = imports::export_macros(&spec.blocks);
    out.extend(exported.clone());
    fallback.extend(exported);
    let errors = cx.into_errors();
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics { errors, fallback })
    }
}

/// A block named like a network.
fn check_names(cx: &diag::Ctxt, spec: &ast::Spec) {
    for def in &spec.blocks {
        if spec.networks.iter().any(|n| n.name == def.name) {
            cx.error(
                diag::SpanRange::single(def.name.span()),
                format!(
                    "`{}` names both a network and a block\n\
                     help: rename the block, e.g. `{}Block` (and its uses)",
                    def.name, def.name
                ),
            );
        }
    }
}

/// What the proc macro returns: the expansion, or the errors and stubs.
pub fn expand_or_errors(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(tokens) => tokens,
        Err(diagnostics) => diagnostics.to_compile_errors(),
    }
}

/// What a pretty-printed expansion leaves in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrettyOptions {
    /// The text constants `SUMMARY`, `FUSIONS`, `GRAPH_MERMAID` and
    /// `GRAPH_DOT`, and `SUMMARY_SPEC` (the summary's rows, for
    /// `summary_at`). The summary and the fusions are in the struct's
    /// documentation as well, so a snapshot without them still shows them
    /// once.
    pub constants: bool,
}

impl Default for PrettyOptions {
    fn default() -> Self {
        Self { constants: true }
    }
}

/// The text constants [`PrettyOptions::constants`] leaves out.
const TEXT_CONSTANTS: [&str; 5] = [
    "SUMMARY",
    "SUMMARY_SPEC",
    "FUSIONS",
    "GRAPH_MERMAID",
    "GRAPH_DOT",
];

/// The expansion pretty-printed with prettyplease, for snapshot tests.
pub fn expand_pretty(input: TokenStream) -> Result<String, Diagnostics> {
    expand_pretty_with(input, PrettyOptions::default())
}

/// [`expand_pretty`], leaving out what `options` say.
pub fn expand_pretty_with(
    input: TokenStream,
    options: PrettyOptions,
) -> Result<String, Diagnostics> {
    let tokens = expand(input)?;
    match syn::parse2::<syn::File>(tokens) {
        Ok(mut file) => {
            if !options.constants {
                drop_text_constants(&mut file);
            }
            Ok(prettyplease::unparse(&file))
        }
        Err(e) => Err(Diagnostics {
            errors: vec![Diagnostic::new(
                SpanRange::single(e.span()),
                format!("netdsl emitted code that does not parse (a bug): {e}"),
            )],
            fallback: TokenStream::new(),
        }),
    }
}

/// Removes the text constants from every `impl` of an expansion.
fn drop_text_constants(file: &mut syn::File) {
    for item in &mut file.items {
        if let syn::Item::Impl(imp) = item {
            imp.items.retain(|i| {
                !matches!(i, syn::ImplItem::Const(c)
                    if TEXT_CONSTANTS.iter().any(|t| c.ident == t))
            });
        }
    }
}
