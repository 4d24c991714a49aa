//! Tokens to [`ast`](crate::ast). Layer arguments and shapes are parsed from
//! their own delimited groups, so a typo inside one layer's parentheses is one
//! error and parsing goes on with the next layer.

use proc_macro2::TokenStream;
use syn::parse::discouraged::Speculative;
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, Ident, LitFloat, LitInt, Token, Visibility};

use crate::ast::*;
use crate::diag::{Ctxt, SpanRange};

pub fn parse(cx: &Ctxt, tokens: TokenStream) -> Spec {
    // syn places "unexpected end of input" at the macro call when the input
    // ends early; point it at the last token instead.
    let last = tokens.clone().into_iter().last().map(|t| t.span());
    let mut networks = Vec::new();
    let mut blocks = Vec::new();
    let result = (|input: ParseStream| {
        while !input.is_empty() {
            // `@import { pub block .. }`: blocks another invocation defined,
            // handed over by the macro a `pub block` emits (see `imports`).
            if input.peek(Token![@]) {
                input.parse::<Token![@]>()?;
                let word: Ident = input.parse()?;
                if word != "import" {
                    return Err(syn::Error::new(word.span(), "expected `@import { .. }`"));
                }
                let content;
                syn::braced!(content in input);
                while !content.is_empty() {
                    let begin = content.cursor();
                    let attrs = content.call(Attribute::parse_outer)?;
                    let vis: Visibility = content.parse()?;
                    let mut def = parse_block(cx, &content, attrs, vis)?;
                    def.tokens = between(begin, content.cursor());
                    def.imported = true;
                    blocks.push(def);
                }
                continue;
            }
            let begin = input.cursor();
            let attrs = input.call(Attribute::parse_outer)?;
            let vis: Visibility = input.parse()?;
            if input.peek(kw::block) && input.peek2(Ident) {
                let mut def = parse_block(cx, input, attrs, vis)?;
                def.tokens = between(begin, input.cursor());
                blocks.push(def);
            } else {
                networks.push(parse_network(cx, input, attrs, vis)?);
            }
        }
        Ok(())
    })
    .parse2(tokens);
    if let Err(e) = result {
        for e in e {
            // A group nested in one recovered from (the `(..)` of a `cat`
            // whose `dim` was wrong) still held the tokens after the error
            // when it was dropped, which syn reports here once more: the
            // error is already reported where it happened.
            if cx.recovered.get() && e.to_string().starts_with("unexpected token") {
                continue;
            }
            match last {
                Some(span) if e.to_string().starts_with("unexpected end of input") => {
                    cx.error(SpanRange::single(span), e.to_string())
                }
                _ => cx.syn_error(e),
            }
        }
    }
    Spec { networks, blocks }
}

/// The tokens from `begin` up to (not including) `end`.
fn between(mut begin: syn::buffer::Cursor<'_>, end: syn::buffer::Cursor<'_>) -> TokenStream {
    let mut out = TokenStream::new();
    while begin < end {
        let Some((tt, next)) = begin.token_tree() else {
            break;
        };
        out.extend([tt]);
        begin = next;
    }
    out
}

/// Takes the `#[netdsl(..)]` attributes out of a network's attributes
/// (the rest go on its struct): `strict` is the one option.
fn netdsl_attrs(cx: &Ctxt, attrs: Vec<Attribute>) -> (Vec<Attribute>, bool) {
    let mut strict = false;
    let mut rest = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("netdsl") {
            rest.push(attr);
            continue;
        }
        let read = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("strict") {
                strict = true;
                Ok(())
            } else {
                Err(meta.error(format!(
                    "unknown netdsl option `{}`: the one option is `strict` (`#[netdsl(strict)]`: \
                     a window op that leaves input rows or columns out of every window is an error)\n\
                     help: write `strict`",
                    meta.path
                        .get_ident()
                        .map_or_else(|| "..".to_string(), ToString::to_string)
                )))
            }
        });
        if let Err(e) = read {
            cx.syn_error(e);
        }
    }
    (rest, strict)
}

/// `block Name(x: [B, C, H, W], out: usize, stride: usize = 1) -> [..] { body }`
fn parse_block(
    cx: &Ctxt,
    input: ParseStream,
    attrs: Vec<Attribute>,
    vis: Visibility,
) -> syn::Result<BlockDef> {
    let keyword: kw::block = input.parse()?;
    let name: Ident = input.parse()?;
    if !input.peek(syn::token::Paren) {
        return Err(input.error(
            "expected the block's input and parameters: `block Name(x: [B, C, H, W], out: usize) { .. }`",
        ));
    }
    let content;
    syn::parenthesized!(content in input);
    let input_name: Ident = content.parse()?;
    content.parse::<Token![:]>()?;
    let input_shape = parse_shape(&content)?;
    let mut params = Vec::new();
    while !content.is_empty() {
        content.parse::<Token![,]>()?;
        if content.is_empty() {
            break;
        }
        let pname: Ident = content.parse()?;
        content.parse::<Token![:]>()?;
        if content.peek(syn::token::Bracket) {
            // A further tensor input: `skip: [B, C, H, W]`.
            let shape = parse_shape(&content)?;
            params.push(BlockParam {
                name: pname,
                kind: ParamKind::Tensor,
                kind_span: shape.span.start,
                default: None,
                shape: Some(shape),
            });
            continue;
        }
        let kind_ident: Ident = content.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected a parameter kind: `usize`, `f64` or `bool`",
            )
        })?;
        let kind = match kind_ident.to_string().as_str() {
            "usize" => ParamKind::Usize,
            "f64" => ParamKind::F64,
            "bool" => ParamKind::Bool,
            other => {
                return Err(syn::Error::new(
                    kind_ident.span(),
                    format!(
                        "a block parameter is a `usize`, `f64` or `bool`, not `{other}`\n\
                         help: a parameter is a tensor (`skip: [B, C, H, W]`), a number or a flag"
                    ),
                ))
            }
        };
        let default = if content.peek(Token![=]) {
            content.parse::<Token![=]>()?;
            Some(parse_value(&content)?)
        } else {
            None
        };
        params.push(BlockParam {
            name: pname,
            kind,
            kind_span: kind_ident.span(),
            default,
            shape: None,
        });
    }
    let (output_shapes, body) = parse_tail(
        cx,
        input,
        "block",
        "write its layers, e.g. `{ x -> conv: Conv2d(out, kernel = 3) -> relu }`",
    )?;
    if let Some(second) = output_shapes.get(1) {
        cx.error(
            second.span,
            "a block gives one tensor; declare one output shape\nhelp: several outputs are for networks",
        );
    }
    if let Some(b) = body.as_ref() {
        if let Some(last) = b.extra_outputs.last() {
            let help = match (&b.output.head, b.output.items.is_empty()) {
                (crate::ast::Head::Var(first), true) => {
                    format!("return one tensor: write `{first}`")
                }
                _ => "return one tensor".to_string(),
            };
            cx.error(
                b.output.span.to(last.span),
                format!(
                    "a block gives one tensor, but its body ends in a tuple\n\
                     help: {help} (several outputs are for networks)"
                ),
            );
        }
    }
    let output_shape = output_shapes.into_iter().next();
    Ok(BlockDef {
        attrs,
        vis,
        keyword: keyword.span,
        name,
        input: input_name,
        input_shape,
        params,
        output_shape,
        body,
        tokens: TokenStream::new(),
        imported: false,
    })
}

fn parse_network(
    cx: &Ctxt,
    input: ParseStream,
    attrs: Vec<Attribute>,
    vis: Visibility,
) -> syn::Result<Network> {
    let lookahead = input.lookahead1();
    if !lookahead.peek(Ident) {
        return Err(
            input.error("expected a network: `pub Name(x: [B, 1, 28, 28]) -> [B, 10] { x -> .. }`")
        );
    }
    let name: Ident = input.parse()?;
    let content;
    let paren = syn::parenthesized!(content in input);
    // The body first, so that a missing input shape can be shown in the
    // form this network's first layer needs.
    let tail = parse_tail(
        cx,
        input,
        "network",
        "write the chain of layers, e.g. `{ x -> conv1: Conv2d(6, kernel = 5) -> relu }`",
    );
    let guess = |input: &str| {
        let body = tail.as_ref().ok().and_then(|(_, b)| b.as_ref());
        input_shape_guess(body, input)
    };
    if content.is_empty() {
        // The name the body starts from, if it reads one no `let` binds.
        let body = tail.as_ref().ok().and_then(|(_, b)| b.as_ref());
        let start = body
            .and_then(|b| {
                let bound: Vec<String> = b
                    .lets
                    .iter()
                    .flat_map(|l| l.names.iter().map(ToString::to_string))
                    .collect();
                b.lets
                    .iter()
                    .filter_map(|l| l.expr.as_ref())
                    .chain([&b.output])
                    .find_map(|e| match &e.head {
                        Head::Var(v) if !bound.contains(&v.to_string()) => Some(v.to_string()),
                        _ => None,
                    })
            })
            .unwrap_or_else(|| "x".to_string());
        return Err(syn::Error::new(
            paren.span.join(),
            format!(
                "`{name}` needs an input: a name and its shape\nhelp: write `({start}: {})`",
                guess(&start)
            ),
        ));
    }
    let input_name: Ident = content.parse()?;
    if !content.peek(Token![:]) {
        return Err(syn::Error::new(
            input_name.span(),
            format!(
                "the input `{input_name}` needs its shape\nhelp: write `{input_name}: {}`",
                guess(&input_name.to_string())
            ),
        ));
    }
    let colon = content.parse::<Token![:]>()?;
    if !content.peek(syn::token::Bracket) && (content.is_empty() || content.peek(Token![,])) {
        return Err(syn::Error::new(
            colon.span,
            format!(
                "the input `{input_name}` has no shape after `:`\nhelp: write `{input_name}: {}`",
                guess(&input_name.to_string())
            ),
        ));
    }
    let input_shape = parse_shape(&content)?;
    let input_ids = parse_ids_dtype(&content)?;
    // Further inputs: `, lengths: [B] u32, h0: [2, B, 64]`.
    let mut extra = Vec::new();
    while content.peek(Token![,]) {
        content.parse::<Token![,]>()?;
        if content.is_empty() {
            break;
        }
        let name: Ident = content.parse()?;
        content.parse::<Token![:]>()?;
        let shape = parse_shape(&content)?;
        let ids = parse_ids_dtype(&content)?;
        extra.push(NetInput { name, shape, ids });
    }
    if !content.is_empty() {
        return Err(content.error(
            "expected `,` and a further input (`lengths: [B] u32`), or `)`: inputs are `name: [shape]`, separated by commas",
        ));
    }
    let (mut output_shapes, body) = tail?;
    let (attrs, strict) = netdsl_attrs(cx, attrs);
    Ok(Network {
        attrs,
        strict,
        vis,
        name,
        input: input_name,
        input_shape,
        input_ids,
        extra,
        output_shape: if output_shapes.is_empty() {
            None
        } else {
            Some(output_shapes.remove(0))
        },
        extra_output_shapes: output_shapes,
        body,
    })
}

/// The shape an input reads as from the first layer applied to it: `[B,
/// 784]` before `Linear(784 -> ..)`, `[B, 3, H, W]` before
/// `Conv2d(3 -> ..)`, `[B, T] u32` before an `Embedding`; `[B, ..]` when the
/// layer does not say.
fn input_shape_guess(body: Option<&Body>, input: &str) -> String {
    let first = body.and_then(|b| {
        b.lets
            .iter()
            .filter_map(|l| l.expr.as_ref())
            .chain([&b.output])
            .find_map(|e| match (&e.head, e.items.first()) {
                (Head::Var(v), Some(ChainItem::Layer(l))) if v == input => Some(l),
                _ => None,
            })
    });
    let Some(layer) = first else {
        return "[B, ..]".to_string();
    };
    let op = layer.op.to_string();
    let features = layer
        .args
        .as_ref()
        .and_then(|a| a.as_ref().ok())
        .and_then(|args| {
            args.iter().find_map(|a| match &a.value {
                Value::Arrow(inner, _, _) => match inner.as_ref() {
                    Value::Int(n, _) => Some(*n),
                    _ => None,
                },
                _ => None,
            })
        });
    match (crate::ops::lookup(&op).map(|d| d.name), features) {
        (Some("Embedding"), _) => "[B, T] u32".to_string(),
        (Some("Linear"), Some(n)) => format!("[B, {n}]"),
        (Some("Conv2d" | "ConvTranspose2d"), Some(n)) => format!("[B, {n}, H, W]"),
        (Some("Conv1d"), Some(n)) => format!("[B, {n}, T]"),
        (Some("RNN" | "LSTM" | "GRU"), Some(n)) => format!("[B, T, {n}]"),
        (Some("Conv2d" | "ConvTranspose2d" | "MaxPool2d" | "AvgPool2d" | "BatchNorm2d"), None) => {
            "[B, C, H, W]".to_string()
        }
        (Some("Conv1d"), None) => "[B, C, T]".to_string(),
        (Some("RNN" | "LSTM" | "GRU" | "MultiHeadAttention" | "LayerNorm"), None) => {
            "[B, T, E]".to_string()
        }
        (Some("Linear"), None) => "[B, F]".to_string(),
        _ => "[B, ..]".to_string(),
    }
}

/// The dtype after a network's input shape that makes it token ids:
/// `ids: [B, T] u32` (or `i64`, `u8`).
fn parse_ids_dtype(input: ParseStream) -> syn::Result<Option<Ident>> {
    if !input.peek(Ident) {
        return Ok(None);
    }
    if input.peek2(Token![:]) {
        // `x: [B, 784] y: [B, 10]`: the next input, without its comma.
        let next: Ident = input.fork().parse()?;
        return Err(syn::Error::new(
            next.span(),
            format!("expected `,` before the input `{next}`: inputs are separated by commas\nhelp: write `, {next}`"),
        ));
    }
    let dtype: Ident = input.parse()?;
    match dtype.to_string().as_str() {
        "u32" | "i64" | "u8" => Ok(Some(dtype)),
        "f32" => Err(syn::Error::new(
            dtype.span(),
            "an input is f32 unless declared as token ids; write no dtype for floats\n\
             help: `x: [B, C, T]` for floats, `ids: [B, T] u32` for token ids",
        )),
        other => Err(syn::Error::new(
            dtype.span(),
            format!(
                "token ids are `u32`, `i64` or `u8`, not `{other}`\n\
                 help: write `ids: [B, T] u32`, or no dtype for a float input"
            ),
        )),
    }
}

/// `( -> [shape] )? { body }` after a network's or block's inputs; an empty
/// body is reported (with `help`) and parsing goes on.
fn parse_tail(
    cx: &Ctxt,
    input: ParseStream,
    what: &str,
    help: &str,
) -> syn::Result<(Vec<ShapeLit>, Option<Body>)> {
    // `-> [..]`, or for several outputs `-> ([..], [..])`.
    let output_shape = if input.peek(Token![->]) {
        input.parse::<Token![->]>()?;
        if input.peek(syn::token::Paren) {
            let content;
            syn::parenthesized!(content in input);
            let shapes = content.parse_terminated(parse_shape, Token![,])?;
            shapes.into_iter().collect()
        } else {
            vec![parse_shape(input)?]
        }
    } else {
        Vec::new()
    };
    if !input.peek(syn::token::Brace) {
        return Err(input.error(format!(
            "expected the {what}'s body in braces: `{{ x -> layer -> .. }}`"
        )));
    }
    let content;
    let brace = syn::braced!(content in input);
    let body = if content.is_empty() {
        cx.error(
            SpanRange::single(brace.span.join()),
            format!("the {what}'s body is empty\nhelp: {help}"),
        );
        None
    } else {
        recover(cx, &content, |s| parse_body(cx, s))
    };
    Ok((output_shape, body))
}

fn parse_shape(input: ParseStream) -> syn::Result<ShapeLit> {
    if !input.peek(syn::token::Bracket) {
        // `(B, 784)`: the dims written in the wrong brackets.
        if let Ok(proc_macro2::TokenTree::Group(g)) = input.fork().parse::<proc_macro2::TokenTree>()
        {
            if g.delimiter() != proc_macro2::Delimiter::Bracket {
                return Err(syn::Error::new(
                    g.span(),
                    format!(
                        "expected a shape in brackets\nhelp: write `[{}]`",
                        g.stream()
                    ),
                ));
            }
        }
        return Err(input.error("expected a shape in brackets, e.g. `[B, 1, 28, 28]`"));
    }
    let content;
    let bracket = syn::bracketed!(content in input);
    let span = SpanRange {
        start: bracket.span.open(),
        end: bracket.span.close(),
    };
    let mut dims = Vec::new();
    while !content.is_empty() {
        if content.peek(Token![_]) {
            let t: Token![_] = content.parse()?;
            dims.push(DimLit::Wild(t.span));
        } else {
            let start = content.span();
            let e = parse_dim_expr(&content)?;
            dims.push(match e {
                DimExpr::Num(n, s) => DimLit::Lit(n, s),
                DimExpr::Sym(i) => DimLit::Sym(i),
                e => {
                    let end = last_span(&e);
                    DimLit::Expr(Box::new(e), SpanRange { start, end })
                }
            });
        }
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
    }
    Ok(ShapeLit { dims, span })
}

fn last_span(e: &DimExpr) -> proc_macro2::Span {
    match e {
        DimExpr::Num(_, s) => *s,
        DimExpr::Sym(i) => i.span(),
        DimExpr::Bin(_, _, r) => last_span(r),
    }
}

/// A dim written as a value (`H`, `64`, `(H - 4) / 2`), as a dim.
fn parse_dim_expr(input: ParseStream) -> syn::Result<DimExpr> {
    if input.peek(Token![_]) {
        return Err(input.error("`_` stands for a whole dim; it cannot be part of arithmetic"));
    }
    Ok(match value_to_dim(&parse_arith(input)?)? {
        DimLit::Lit(n, s) => DimExpr::Num(n, s),
        DimLit::Sym(i) => DimExpr::Sym(i),
        DimLit::Expr(e, _) => *e,
        DimLit::Wild(s) => return Err(syn::Error::new(s, "expected a dim")),
    })
}

/// Parses a delimited group's contents with `f`; on error, reports it, skips
/// the rest of the group and returns `None`, so parsing goes on after it.
fn recover<T>(
    cx: &Ctxt,
    content: ParseStream,
    f: impl FnOnce(ParseStream) -> syn::Result<T>,
) -> Option<T> {
    match f(content) {
        Ok(v) => Some(v),
        Err(e) => {
            cx.syn_error(e);
            cx.recovered.set(true);
            // Drain what is left, or syn reports it again as unexpected.
            let _ = content.parse::<TokenStream>();
            None
        }
    }
}

mod kw {
    syn::custom_keyword!(block);
    syn::custom_keyword!(cat);
    syn::custom_keyword!(crop);
    syn::custom_keyword!(chunk);
    syn::custom_keyword!(split);
    syn::custom_keyword!(like);
    syn::custom_keyword!(size);
    syn::custom_keyword!(top);
    syn::custom_keyword!(left);
    syn::custom_keyword!(dim);
    syn::custom_keyword!(repeat);
}

/// A `let` pattern: `y`, `_`, `(a, b)`, `(y, (h, c))`.
fn parse_pattern(input: ParseStream) -> syn::Result<Pattern> {
    if input.peek(syn::token::Paren) {
        let content;
        let paren = syn::parenthesized!(content in input);
        let items = content.parse_terminated(parse_pattern, Token![,])?;
        if items.is_empty() {
            return Err(content.error("expected names: `let (a, b) = chunk(x, 2, dim = 1);`"));
        }
        let span = SpanRange {
            start: paren.span.open(),
            end: paren.span.close(),
        };
        Ok(Pattern::Tuple(items.into_iter().collect(), span))
    } else if input.peek(Token![_]) {
        // `_` drops a value.
        let u: Token![_] = input.parse()?;
        Ok(Pattern::Name(Ident::new("_", u.span)))
    } else {
        Ok(Pattern::Name(input.parse::<Ident>()?))
    }
}

/// `let a = expr; .. expr`
fn parse_body(cx: &Ctxt, input: ParseStream) -> syn::Result<Body> {
    let mut lets = Vec::new();
    while input.peek(Token![let]) {
        input.parse::<Token![let]>()?;
        let pattern = parse_pattern(input)?;
        let names = pattern.names();
        input.parse::<Token![=]>()?;
        // A single name may bind a number: `let hidden = C * t;`.
        let fork = input.fork();
        let value = match parse_arith(&fork) {
            Ok(v) if names.len() == 1 && fork.peek(Token![;]) => Some(v),
            _ => None,
        };
        let expr = match &value {
            Some(v) if !v.reads_as_tensor() => {
                input.advance_to(&fork);
                None
            }
            _ => Some(parse_expr(cx, input)?),
        };
        input.parse::<Token![;]>()?;
        lets.push(Let {
            names,
            pattern,
            expr,
            value,
        });
    }
    if input.is_empty() {
        return Err(input.error("expected the network's output after its `let`s, e.g. `y -> relu`"));
    }
    // `(a, b, ..)` at the end: several outputs (a network's). Told apart
    // from a parenthesised expression by a comma at the group's top level.
    if input.peek(syn::token::Paren) {
        let fork = input.fork();
        let content;
        syn::parenthesized!(content in fork);
        let tokens: TokenStream = content.parse()?;
        let tuple = fork.is_empty()
            && tokens
                .into_iter()
                .any(|t| matches!(t, proc_macro2::TokenTree::Punct(p) if p.as_char() == ','));
        if tuple {
            let content;
            syn::parenthesized!(content in input);
            let mut items: Vec<Expr> = Vec::new();
            while !content.is_empty() {
                items.push(parse_expr(cx, &content)?);
                if content.is_empty() {
                    break;
                }
                content.parse::<Token![,]>()?;
            }
            let output = items.remove(0);
            return Ok(Body {
                lets,
                output,
                extra_outputs: items,
            });
        }
    }
    let output = parse_expr(cx, input)?;
    if !input.is_empty() {
        return Err(input.error("expected `->`, `:` or the end of the network's body"));
    }
    Ok(Body {
        lets,
        output,
        extra_outputs: Vec::new(),
    })
}

/// `term (-> layer | : [shape])*`, and a chain may end in a split:
/// `x -> proj: Conv2d(2 * C, kernel = 1) -> chunk(2, dim = 1)`.
fn parse_expr(cx: &Ctxt, input: ParseStream) -> syn::Result<Expr> {
    let head_span = input.span();
    let head = parse_sum(cx, input)?;
    let items = parse_items(cx, input, Vec::new())?;
    let span = SpanRange::single(head_span);
    let e = Expr {
        id: cx.next_id(),
        head,
        items,
        span,
    };
    if !split_follows(input) {
        return Ok(e);
    }
    input.parse::<Token![->]>()?;
    let kw: Ident = input.parse()?;
    let content;
    let paren = syn::parenthesized!(content in input);
    let (how, dim) = parse_split_args(&content, &kw, "")?;
    let head = Head::Split {
        src: Box::new(e),
        how,
        dim,
        span: SpanRange {
            start: kw.span(),
            end: paren.span.close(),
        },
    };
    let items = parse_items(cx, input, Vec::new())?;
    Ok(Expr {
        id: cx.next_id(),
        head,
        items,
        span,
    })
}

/// `dim = d` (`d` may be negative) in `cat`, `chunk` and `split`.
fn parse_dim_arg(content: ParseStream) -> syn::Result<(i64, SpanRange)> {
    content.parse::<kw::dim>()?;
    content.parse::<Token![=]>()?;
    let neg = content.parse::<Option<Token![-]>>()?.is_some();
    let lit: LitInt = content.parse()?;
    let n: i64 = lit.base10_parse()?;
    Ok((if neg { -n } else { n }, SpanRange::single(lit.span())))
}

/// `-> chunk(..)` or `-> split(..)`: a split at the end of a chain.
fn split_follows(input: ParseStream) -> bool {
    let fork = input.fork();
    fork.parse::<Token![->]>().is_ok()
        && (fork.peek(kw::chunk) || fork.peek(kw::split))
        && fork.peek2(syn::token::Paren)
}

/// What follows the tensor in `chunk(x, 2, dim = 1)` / `split(x, [16, 48], dim = 1)`
/// (or all of `chunk(2, dim = 1)` at the end of a chain).
fn parse_split_args(
    content: ParseStream,
    kw: &Ident,
    tensor: &str,
) -> syn::Result<(SplitHow, Option<(i64, SpanRange)>)> {
    let how = if kw == "chunk" {
        SplitHow::Chunk(parse_value(content)?)
    } else if content.peek(syn::token::Bracket) {
        let list;
        syn::bracketed!(list in content);
        let mut sizes = Vec::new();
        while !list.is_empty() {
            sizes.push(parse_value(&list)?);
            if !list.is_empty() {
                list.parse::<Token![,]>()?;
            }
        }
        SplitHow::Sizes(sizes, true)
    } else {
        SplitHow::Sizes(vec![parse_value(content)?], false)
    };
    let mut dim = None;
    if content.peek(Token![,]) {
        content.parse::<Token![,]>()?;
    }
    if content.peek(kw::dim) {
        dim = Some(parse_dim_arg(content)?);
        content.parse::<Option<Token![,]>>()?;
    }
    if !content.is_empty() {
        return Err(content.error(format!(
            "expected `)`: `{kw}` takes {tensor}{} and `dim = d`",
            if kw == "chunk" {
                "a count"
            } else {
                "a size or `[sizes]`"
            }
        )));
    }
    Ok((how, dim))
}

/// `product ((+ | -) product)*`, left to right; `*` binds tighter, as in Rust.
fn parse_sum(cx: &Ctxt, input: ParseStream) -> syn::Result<Head> {
    parse_binary(cx, input, true)
}

/// One precedence level of tensor arithmetic: sums of products (`sum`), or
/// products of atoms.
fn parse_binary(cx: &Ctxt, input: ParseStream, sum: bool) -> syn::Result<Head> {
    let operand = |input: ParseStream| {
        if sum {
            parse_binary(cx, input, false)
        } else {
            parse_atom_head(cx, input)
        }
    };
    let mut head = operand(input)?;
    loop {
        let op = if sum && input.peek(Token![+]) {
            BinOp::Add
        } else if sum && input.peek(Token![-]) && !input.peek(Token![->]) {
            BinOp::Sub
        } else if !sum && input.peek(Token![*]) {
            BinOp::Mul
        } else {
            return Ok(head);
        };
        let tok: proc_macro2::TokenTree = input.parse()?;
        let rhs_span = input.span();
        let rhs = operand(input)?;
        let span = SpanRange::single(tok.span());
        let wrap = |h: Head, s| {
            Box::new(Expr {
                id: cx.next_id(),
                head: h,
                items: Vec::new(),
                span: SpanRange::single(s),
            })
        };
        let lhs_span = tok.span();
        head = Head::Binary {
            op,
            lhs: wrap(head, lhs_span),
            rhs: wrap(rhs, rhs_span),
            span,
        };
    }
}

/// A name, `cat(..)`, `crop(..)` or `(expr)`.
fn parse_atom_head(cx: &Ctxt, input: ParseStream) -> syn::Result<Head> {
    let lookahead = input.lookahead1();
    if input.peek(kw::cat) && input.peek2(syn::token::Paren) {
        let kw: kw::cat = input.parse()?;
        let content;
        let paren = syn::parenthesized!(content in input);
        let mut args = Vec::new();
        let mut dim = None;
        while !content.is_empty() {
            if content.peek(kw::dim) && content.peek2(Token![=]) {
                dim = Some(parse_dim_arg(&content)?);
            } else {
                args.push(parse_expr(cx, &content)?);
            }
            if !content.is_empty() {
                content.parse::<Token![,]>()?;
            }
        }
        let span = SpanRange {
            start: kw.span,
            end: paren.span.close(),
        };
        return Ok(Head::Cat { args, dim, span });
    }
    if input.peek(kw::crop) && input.peek2(syn::token::Paren) {
        let kw: kw::crop = input.parse()?;
        let content;
        let paren = syn::parenthesized!(content in input);
        let src = parse_expr(cx, &content)?;
        content.parse::<Token![,]>()?;
        let to = if content.peek(kw::like) {
            content.parse::<kw::like>()?;
            content.parse::<Token![=]>()?;
            CropTo::Like(Box::new(parse_expr(cx, &content)?))
        } else {
            let (mut size, mut top, mut left) = (None, None, None);
            while !content.is_empty() {
                let key: Ident = content.parse()?;
                content.parse::<Token![=]>()?;
                let v = parse_value(&content)?;
                match key.to_string().as_str() {
                    "size" => size = Some(v),
                    "top" => top = Some(v),
                    "left" => left = Some(v),
                    _ => {
                        return Err(syn::Error::new(
                            key.span(),
                            "`crop` takes `like = tensor`, or `size = (h, w)` with optional `top` and `left`",
                        ))
                    }
                }
                if !content.is_empty() {
                    content.parse::<Token![,]>()?;
                }
            }
            let pair = |v: Value| match v {
                Value::Tuple(items, _) if items.len() == 2 => {
                    let mut it = items.into_iter();
                    Some((it.next()?, it.next()?))
                }
                other => Some((other.clone(), other)),
            };
            let Some(size) = size.and_then(pair) else {
                return Err(syn::Error::new(
                    kw.span,
                    "`crop` needs `like = tensor` or `size = (h, w)`\nhelp: write `crop(skip, like = x)` or `crop(x, size = (56, 56))`",
                ));
            };
            let offset = match (top, left) {
                (None, None) => None,
                (Some(t), Some(l)) => Some(Box::new((t, l))),
                _ => {
                    return Err(syn::Error::new(
                        kw.span,
                        "a crop at an offset needs both `top` and `left`",
                    ))
                }
            };
            CropTo::Size {
                size: Box::new(size),
                offset,
            }
        };
        content.parse::<Option<Token![,]>>()?;
        let span = SpanRange {
            start: kw.span,
            end: paren.span.close(),
        };
        return Ok(Head::Crop {
            src: Box::new(src),
            to,
            span,
        });
    }
    if (input.peek(kw::chunk) || input.peek(kw::split)) && input.peek2(syn::token::Paren) {
        let kw: Ident = input.parse()?;
        let content;
        let paren = syn::parenthesized!(content in input);
        let src = parse_expr(cx, &content)?;
        content.parse::<Token![,]>()?;
        let (how, dim) = parse_split_args(&content, &kw, "a tensor, ")?;
        let span = SpanRange {
            start: kw.span(),
            end: paren.span.close(),
        };
        return Ok(Head::Split {
            src: Box::new(src),
            how,
            dim,
            span,
        });
    }
    if input.peek(Token![if]) {
        let kw: Token![if] = input.parse()?;
        let cond = parse_cond(input)?;
        let content;
        syn::braced!(content in input);
        let then = parse_expr(cx, &content)?;
        if !content.is_empty() {
            return Err(content.error("expected `}`: a branch is one tensor expression"));
        }
        input.parse::<Token![else]>().map_err(|_| {
            syn::Error::new(
                kw.span,
                "an `if` needs an `else`: both branches give the tensor\n\
                 help: write `else { x }` after the branch (the block's input, or a tensor bound earlier), \
                 e.g. `if C != out { x -> proj: Conv2d(out, kernel = 1) } else { x }`",
            )
        })?;
        let content;
        let brace = syn::braced!(content in input);
        let els = parse_expr(cx, &content)?;
        if !content.is_empty() {
            return Err(content.error("expected `}`: a branch is one tensor expression"));
        }
        return Ok(Head::If {
            id: cx.next_id(),
            cond,
            then: Box::new(then),
            els: Box::new(els),
            span: SpanRange {
                start: kw.span,
                end: brace.span.close(),
            },
        });
    }
    if lookahead.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in input);
        let inner = parse_expr(cx, &content)?;
        if !content.is_empty() {
            return Err(content.error("expected `)`"));
        }
        return Ok(Head::Paren(Box::new(inner)));
    }
    if lookahead.peek(Ident) {
        return Ok(Head::Var(input.parse()?));
    }
    Err(lookahead.error())
}

/// `-> layer`, `: [shape]`, repeated while they come; the caller decides
/// what may follow (`;`, `,`, the end of a group).
/// `if cond { layers } [else { layers }]` as an item of a chain.
fn parse_chain_if(cx: &Ctxt, input: ParseStream) -> syn::Result<ChainItem> {
    let kw: Token![if] = input.parse()?;
    let cond = parse_cond(input)?;
    let branch = |input: ParseStream| -> syn::Result<(Vec<ChainItem>, proc_macro2::Span)> {
        let content;
        let brace = syn::braced!(content in input);
        if content.is_empty() {
            return Err(syn::Error::new(
                brace.span.join(),
                "an empty branch: a branch holds the layers that exist when it is taken\n\
                 help: write its layers, e.g. `{ relu }`; an `else` with no layers is left out",
            ));
        }
        let first = parse_layer(cx, &content)?;
        let items = parse_items(cx, &content, vec![first])?;
        if !content.is_empty() {
            return Err(content.error("expected `->`, `:` or the end of the branch"));
        }
        Ok((items, brace.span.close()))
    };
    let (then, mut end) = branch(input)?;
    let els = if input.peek(Token![else]) {
        input.parse::<Token![else]>()?;
        let (els, e) = branch(input)?;
        end = e;
        els
    } else {
        Vec::new()
    };
    Ok(ChainItem::If(ChainIf {
        keyword: kw.span,
        cond,
        then,
        els,
        span: SpanRange {
            start: kw.span,
            end,
        },
    }))
}

fn parse_items(
    cx: &Ctxt,
    input: ParseStream,
    mut items: Vec<ChainItem>,
) -> syn::Result<Vec<ChainItem>> {
    while (input.peek(Token![->]) && !split_follows(input)) || input.peek(Token![:]) {
        let lookahead = input.lookahead1();
        if lookahead.peek(Token![->]) {
            let arrow = input.parse::<Token![->]>()?;
            if input.is_empty() {
                return Err(syn::Error::new_spanned(
                    arrow,
                    "expected a layer after `->`\nhelp: write one, e.g. `-> relu` or `-> conv1: Conv2d(6, kernel = 5)`, \
                     or remove the `->`",
                ));
            }
            items.push(parse_layer(cx, input)?);
        } else if lookahead.peek(Token![:]) {
            input.parse::<Token![:]>()?;
            items.push(ChainItem::Assert(parse_shape(input)?));
        } else {
            return Err(lookahead.error());
        }
    }
    Ok(items)
}

fn parse_layer(cx: &Ctxt, input: ParseStream) -> syn::Result<ChainItem> {
    if input.peek(Token![if]) {
        return parse_chain_if(cx, input);
    }
    if input.peek(Token![..]) {
        // `..Stage(64)`: a block's layers spliced into this chain.
        let dots: Token![..] = input.parse()?;
        return match parse_layer(cx, input)? {
            ChainItem::Layer(mut l) if l.name.is_none() => {
                l.splice = Some(dots.spans[0]);
                l.span.start = dots.spans[0];
                Ok(ChainItem::Layer(l))
            }
            ChainItem::Repeat(mut r) if r.name.is_none() => {
                r.splice = true;
                r.span.start = dots.spans[0];
                Ok(ChainItem::Repeat(r))
            }
            ChainItem::Layer(l) => Err(syn::Error::new(
                l.name.as_ref().map_or(dots.spans[0], |n| n.span()),
                format!(
                    "a spliced block has no name of its own: its layers take the enclosing chain's \
                     names\nhelp: remove `{}:`",
                    l.name.as_ref().map_or(String::new(), |n| n.to_string())
                ),
            )),
            _ => Err(syn::Error::new(
                dots.spans[0],
                "only a block use or an unnamed `repeat` can be spliced: `..Stage(64)`, \
                 `..repeat 2 { .. }`\nhelp: remove `..`",
            )),
        };
    }
    let doubled = input.peek(Token![->]);
    let first: Ident = input.parse().map_err(|e| {
        let help = if doubled {
            "help: remove `->`, the extra one"
        } else {
            "help: write a layer there, e.g. `relu` or `conv1: Conv2d(6, kernel = 5)`"
        };
        syn::Error::new(e.span(), format!("expected a layer after `->`\n{help}"))
    })?;
    // A dotted name (`layer1.0.conv1: Conv2d(..)`) spells a PyTorch module path.
    let mut name_rest = Vec::new();
    while input.peek(Token![.]) {
        let dot: Token![.] = input.parse()?;
        if input.peek(Ident) {
            name_rest.push(input.parse::<Ident>()?.to_string());
        } else if input.peek(LitInt) {
            name_rest.push(input.parse::<LitInt>()?.base10_digits().to_string());
        } else {
            return Err(syn::Error::new(
                dot.span,
                "expected a name or an index after `.`, e.g. `layer1.0.conv1`",
            ));
        }
    }
    // `name: Op` (a named layer) versus `op : [..]` (an assertion after it).
    let (name, op) = if input.peek(Token![:]) && input.peek2(Ident) {
        input.parse::<Token![:]>()?;
        (Some(first), input.parse::<Ident>()?)
    } else if !name_rest.is_empty() {
        return Err(input.error("a dotted name names a layer: write `layer1.0.conv1: Conv2d(..)`"));
    } else {
        (None, first)
    };
    let start = name.as_ref().unwrap_or(&op).span();
    // `repeat 3 X`, `repeat n { .. }`, `repeat (n - 1) X`: a count, then what
    // to repeat (no op is called `repeat`).
    let counted = || {
        let fork = input.fork();
        let group: syn::Result<proc_macro2::Group> = fork.parse();
        group.is_ok() && (fork.peek(Ident) || fork.peek(syn::token::Brace))
    };
    if op == "repeat" && (!input.peek(syn::token::Paren) || counted()) {
        let count = parse_atom(input)?;
        let (body, end) = if input.peek(syn::token::Brace) {
            let content;
            let brace = syn::braced!(content in input);
            let items = recover(cx, &content, |s| {
                if s.is_empty() {
                    return Err(s.error("an empty `repeat`: write the layers to repeat, e.g. `repeat 3 { Conv2d(64, kernel = 3, padding = 1) -> relu }`"));
                }
                let first = parse_layer(cx, s)?;
                let items = parse_items(cx, s, vec![first])?;
                if !s.is_empty() {
                    return Err(s.error("expected `->`, `:` or the end of the `repeat`"));
                }
                Ok(items)
            });
            (
                RepeatBody::Items(items.unwrap_or_default()),
                brace.span.close(),
            )
        } else {
            let layer = match parse_layer(cx, input)? {
                ChainItem::Layer(l) => l,
                _ => {
                    return Err(input.error(
                        "`repeat N` takes a layer or block (`repeat 2 BasicBlock(64)`) or a chain in braces",
                    ))
                }
            };
            if layer.name.is_some() {
                return Err(syn::Error::new(
                    layer.span.start,
                    "the copies of a `repeat` are numbered; name the `repeat` instead: `layer1: repeat 2 BasicBlock(64)`",
                ));
            }
            if let Some(dots) = layer.splice {
                let call = match &layer.args {
                    Some(Ok(args)) => format!(
                        "{}({})",
                        layer.op,
                        args.iter()
                            .map(|a| match &a.key {
                                Some(k) => format!("{k} = {}", a.value),
                                None => a.value.to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => layer.op.to_string(),
                };
                return Err(syn::Error::new(
                    dots,
                    format!(
                        "a spliced use is repeated inside braces, where its layers are numbered on\n\
                         help: write `{{ ..{call} }}` for `..{call}`"
                    ),
                ));
            }
            let end = layer.span.end;
            (RepeatBody::Layer(Box::new(layer)), end)
        };
        return Ok(ChainItem::Repeat(Repeat {
            name,
            name_rest,
            keyword: op,
            count,
            body,
            span: SpanRange { start, end },
            splice: false,
        }));
    }
    if (op == "seq" || op == "Sequential") && input.peek(syn::token::Brace) {
        let content;
        let brace = syn::braced!(content in input);
        let span = SpanRange {
            start,
            end: brace.span.close(),
        };
        let items = recover(cx, &content, |s| {
            if s.is_empty() {
                return Err(s.error("an empty `seq`: write its layers, e.g. `features: seq { Conv2d(6, kernel = 3) -> relu }`"));
            }
            let first = parse_layer(cx, s)?;
            let items = parse_items(cx, s, vec![first])?;
            if !s.is_empty() {
                return Err(s.error("expected `->`, `:` or the end of the `seq`"));
            }
            Ok(items)
        });
        return Ok(ChainItem::Seq(Seq {
            name,
            name_rest,
            keyword: op,
            items: items.unwrap_or_default(),
            span,
        }));
    }
    let mut end = op.span();
    let args = if input.peek(syn::token::Paren) {
        let content;
        let paren = syn::parenthesized!(content in input);
        end = paren.span.close();
        Some(recover(cx, &content, parse_args).ok_or(()))
    } else {
        None
    };
    Ok(ChainItem::Layer(Layer {
        name,
        name_rest,
        op,
        args,
        span: SpanRange { start, end },
        splice: None,
    }))
}

fn parse_args(input: ParseStream) -> syn::Result<Vec<Arg>> {
    let mut args = Vec::new();
    while !input.is_empty() {
        let key = if input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            let k: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            Some(k)
        } else {
            None
        };
        let value = parse_value(input)?;
        let span = match &key {
            Some(k) => SpanRange::single(k.span()).to(value.span()),
            None => value.span(),
        };
        args.push(Arg { key, value, span });
        if !input.is_empty() && !input.peek(Token![,]) {
            // `kernel = 3 stride = 2`: the comma between two arguments.
            let next = input.fork().parse::<proc_macro2::TokenTree>()?;
            return Err(syn::Error::new(
                next.span(),
                format!("expected `,` between arguments\nhelp: write `, {next}`"),
            ));
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(args)
}

fn parse_value(input: ParseStream) -> syn::Result<Value> {
    let lhs = parse_arith(input)?;
    if input.peek(Token![->]) {
        input.parse::<Token![->]>()?;
        let rhs = parse_arith(input)?;
        let span = lhs.span().to(rhs.span());
        return Ok(Value::Arrow(Box::new(lhs), Box::new(rhs), span));
    }
    Ok(lhs)
}

/// `term ((+ | -) term)*` over values: `2 * out`, `C / 4 + 1`.
fn parse_arith(input: ParseStream) -> syn::Result<Value> {
    parse_arith_level(input, true)
}

/// One precedence level of value arithmetic: sums of products (`sum`), or
/// products of atoms.
fn parse_arith_level(input: ParseStream, sum: bool) -> syn::Result<Value> {
    let operand = |input: ParseStream| {
        if sum {
            parse_arith_level(input, false)
        } else {
            parse_atom(input)
        }
    };
    let mut v = operand(input)?;
    loop {
        let op = if sum && input.peek(Token![+]) {
            ArithOp::Add
        } else if sum && input.peek(Token![-]) && !input.peek(Token![->]) {
            ArithOp::Sub
        } else if !sum && input.peek(Token![*]) {
            ArithOp::Mul
        } else if !sum && input.peek(Token![/]) {
            ArithOp::Div
        } else {
            return Ok(v);
        };
        let _: proc_macro2::TokenTree = input.parse()?;
        let rhs = operand(input)?;
        let span = v.span().to(rhs.span());
        v = Value::Arith(op, Box::new(v), Box::new(rhs), span);
    }
}

fn parse_atom(input: ParseStream) -> syn::Result<Value> {
    let lookahead = input.lookahead1();
    if lookahead.peek(Token![-]) {
        let minus: Token![-] = input.parse()?;
        let start = SpanRange::single(minus.span);
        return match parse_atom(input)? {
            Value::Int(n, s) => Ok(Value::Int(-n, start.to(s))),
            Value::Float(f, s) => Ok(Value::Float(-f, start.to(s))),
            other => Err(syn::Error::new_spanned(
                start.to(other.span()),
                format!("only a number can be negated\nhelp: write `{other}`"),
            )),
        };
    }
    if lookahead.peek(LitInt) {
        let lit: LitInt = input.parse()?;
        let n = lit
            .base10_parse::<i64>()
            .map_err(|_| syn::Error::new(lit.span(), "integer out of range"))?;
        return Ok(Value::Int(n, SpanRange::single(lit.span())));
    }
    if lookahead.peek(LitFloat) {
        let lit: LitFloat = input.parse()?;
        return Ok(Value::Float(
            lit.base10_parse()?,
            SpanRange::single(lit.span()),
        ));
    }
    if lookahead.peek(syn::LitBool) {
        let lit: syn::LitBool = input.parse()?;
        return Ok(Value::Bool(lit.value, SpanRange::single(lit.span)));
    }
    if lookahead.peek(Ident) {
        return Ok(Value::Ident(input.parse()?));
    }
    if lookahead.peek(syn::token::Paren) {
        let content;
        let paren = syn::parenthesized!(content in input);
        let mut items = Vec::new();
        let mut comma = false;
        while !content.is_empty() {
            items.push(parse_value(&content)?);
            if !content.is_empty() {
                content.parse::<Token![,]>()?;
                comma = true;
            }
        }
        if items.len() == 1 && !comma {
            // `(C - 4) / 2`: parentheses for grouping.
            return Ok(items.remove(0));
        }
        let span = SpanRange {
            start: paren.span.open(),
            end: paren.span.close(),
        };
        return Ok(Value::Tuple(items, span));
    }
    Err(lookahead.error())
}

/// `a || b`, `a && b`, `!a`, `x != y`, `(..)`: a compile-time condition.
fn parse_cond(input: ParseStream) -> syn::Result<Cond> {
    let mut c = parse_cond_and(input)?;
    while input.peek(Token![||]) {
        input.parse::<Token![||]>()?;
        c = Cond::Or(Box::new(c), Box::new(parse_cond_and(input)?));
    }
    Ok(c)
}

fn parse_cond_and(input: ParseStream) -> syn::Result<Cond> {
    let mut c = parse_cond_atom(input)?;
    while input.peek(Token![&&]) {
        input.parse::<Token![&&]>()?;
        c = Cond::And(Box::new(c), Box::new(parse_cond_atom(input)?));
    }
    Ok(c)
}

fn parse_cond_atom(input: ParseStream) -> syn::Result<Cond> {
    if input.peek(Token![!]) && !input.peek(Token![!=]) {
        input.parse::<Token![!]>()?;
        return Ok(Cond::Not(Box::new(parse_cond_atom(input)?)));
    }
    if input.peek(syn::token::Paren) {
        let fork = input.fork();
        let content;
        syn::parenthesized!(content in fork);
        if parse_cond(&content).is_ok() && content.is_empty() {
            let content;
            syn::parenthesized!(content in input);
            return parse_cond(&content);
        }
    }
    if input.peek(syn::LitBool) {
        let b: syn::LitBool = input.parse()?;
        return Ok(Cond::Bool(b.value, SpanRange::single(b.span)));
    }
    let lhs = parse_arith(input)?;
    let op = if input.peek(Token![==]) {
        input.parse::<Token![==]>()?;
        CmpOp::Eq
    } else if input.peek(Token![!=]) {
        input.parse::<Token![!=]>()?;
        CmpOp::Ne
    } else if input.peek(Token![<=]) {
        input.parse::<Token![<=]>()?;
        CmpOp::Le
    } else if input.peek(Token![>=]) {
        input.parse::<Token![>=]>()?;
        CmpOp::Ge
    } else if input.peek(Token![<]) {
        input.parse::<Token![<]>()?;
        CmpOp::Lt
    } else if input.peek(Token![>]) {
        input.parse::<Token![>]>()?;
        CmpOp::Gt
    } else {
        if let Value::Ident(i) = &lhs {
            // A `bool` block parameter on its own.
            return Ok(Cond::Cmp(
                CmpOp::Eq,
                lhs.clone(),
                Value::Bool(true, SpanRange::single(i.span())),
            ));
        }
        return Err(input.error("expected a comparison: `==`, `!=`, `<`, `<=`, `>`, `>=`"));
    };
    let rhs = parse_arith(input)?;
    Ok(Cond::Cmp(op, lhs, rhs))
}
