//! Reusable blocks: a block is a template, checked where it is used. Each
//! use binds the block's parameters to its arguments and the symbols of the
//! block's input shape to the incoming tensor's dims, then resolves and
//! checks the body with those values, as if it were written out there.
//!
//! An error inside the body is reported at the layer inside the block, and
//! the message names the use (`note: in `layer2.0: BasicBlock(128, stride = 2)``),
//! so a block that is right at one width and wrong at another says where.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::ast::{BlockDef, DimLit, ParamKind, Value};
use crate::declared::eval_dim;
use crate::diag::{did_you_mean, Ctxt, SpanRange};
use crate::infer::ProgramShapes;
use crate::resolve::{resolve_body, subst, BlockUse, Env, EnvVal, Program, Scope};
use crate::shape::{fmt_shape, Dim, Shape};

/// The blocks of one invocation, and where errors inside their uses go.
pub struct Blocks<'a> {
    pub defs: &'a [BlockDef],
    pub cx: &'a Ctxt,
    depth: Cell<usize>,
    /// Blocks on a cycle of uses (reported once; never instantiated).
    recursive: RefCell<Vec<bool>>,
    /// Errors inside blocks already reported for one use: the same mistake
    /// in another use is not reported again.
    seen: RefCell<HashSet<String>>,
    /// Checked instances by block, arguments and input shape: uses that
    /// agree in all three (`repeat 5 BasicBlock(256)`) are checked once, and
    /// lowering reuses what checking found.
    memo: RefCell<HashMap<String, Rc<Instance>>>,
    /// The network being inferred is `#[netdsl(strict)]`: window ops that
    /// leave input rows out are errors, in its blocks' bodies too.
    pub strict: Cell<bool>,
    /// For those errors: the nearest input sizes that lose nothing, found
    /// before the network is inferred for its messages.
    pub strict_help: RefCell<Option<String>>,
}

/// One use of a block, checked: its own dataflow graph with every shape.
pub struct Instance {
    pub program: Program,
    pub shapes: ProgramShapes,
    pub output: Shape,
}

/// How deep blocks may nest before it must be recursion.
const MAX_DEPTH: usize = 24;

impl<'a> Blocks<'a> {
    pub fn new(cx: &'a Ctxt, defs: &'a [BlockDef]) -> Self {
        Self {
            defs,
            cx,
            depth: Cell::new(0),
            recursive: RefCell::new(vec![false; defs.len()]),
            seen: RefCell::new(HashSet::new()),
            memo: RefCell::new(HashMap::new()),
            strict: Cell::new(false),
            strict_help: RefCell::new(None),
        }
    }

    /// Checks block definitions that do not depend on any use: parameter
    /// names, and recursion between blocks (reported once, at the use that
    /// closes the cycle).
    pub fn check_definitions(&self) {
        for (i, def) in self.defs.iter().enumerate() {
            if let Some(other) = self.defs[..i].iter().find(|d| d.name == def.name) {
                let _ = other;
                self.cx.error(
                    SpanRange::single(def.name.span()),
                    format!(
                        "a block named `{}` is already defined\n\
                         help: rename this one, e.g. `{}2` (and its uses), or remove it",
                        def.name, def.name
                    ),
                );
            }
            for (j, p) in def.params.iter().enumerate() {
                // An imported block's definition was checked where written.
                if def.imported {
                    break;
                }
                if def.params[..j].iter().any(|q| q.name == p.name) || p.name == def.input {
                    self.cx.error(
                        SpanRange::single(p.name.span()),
                        format!(
                            "parameter `{}` is declared twice\nhelp: rename this one, e.g. `{}_2`, or remove it",
                            p.name, p.name
                        ),
                    );
                }
            }
            if let Some(path) = self.cycle_from(i) {
                let names: Vec<String> = path
                    .iter()
                    .map(|&(b, _)| self.defs[b].name.to_string())
                    .collect();
                let span = path
                    .last()
                    .map(|&(_, s)| s)
                    .unwrap_or(SpanRange::single(def.name.span()));
                self.recursive.borrow_mut()[i] = true;
                // Once per cycle: from the first block on it.
                if path.iter().all(|&(b, _)| b >= i) {
                    self.cx.error(
                        span,
                        format!(
                            "recursion between blocks: {} -> {}\nhelp: a block cannot use itself, directly or through other blocks; \
                             write the repetition with `repeat N`",
                            names.join(" -> "),
                            def.name
                        ),
                    );
                }
            }
        }
    }

    /// Checks each used block's body once on its own, generic over its
    /// parameters: what does not depend on their values (an unknown op,
    /// argument or tensor name, an unused `let`) is reported even when no
    /// use could be checked (every use had a wrong argument or input), so
    /// that fixing the use does not reveal a second round of errors. A
    /// mistake a checked use already reported is not reported again.
    pub fn check_bodies_alone(&self, networks: &[crate::ast::Network]) {
        // A block only ever spliced is read at each splice, in the caller's
        // chain (a `seq` numbers its unnamed `repeat`): not on its own.
        let named = self.named_by(networks, false);
        let spliced = self.named_by(networks, true);
        for def in self.defs {
            let Some(body) = def.body.as_ref() else {
                continue;
            };
            // Used ones, and `pub` ones no network here uses (made for
            // others). An unused one may be meant for splicing, where its
            // unnamed layers take a `seq`'s indices: its missing names are
            // not mistakes.
            let name = def.name.to_string();
            if def.imported {
                continue;
            }
            let unused_pub =
                !matches!(def.vis, syn::Visibility::Inherited) && !spliced.contains(&name);
            if !unused_pub && !named.contains(&name) {
                continue;
            }
            // Every number, flag and dim of the inputs is unknown, so
            // nothing that depends on one reports: only what is wrong for
            // every use does.
            let mut env: Env = crate::resolve::input_env(&def.input_shape);
            let mut extra = Vec::new();
            for p in &def.params {
                if p.kind == ParamKind::Tensor {
                    extra.push(p.name.clone());
                    if let Some(shape) = &p.shape {
                        env.extend(crate::resolve::input_env(shape));
                    }
                } else {
                    env.insert(p.name.to_string(), EnvVal::Failed);
                }
            }
            for v in env.values_mut() {
                *v = EnvVal::Failed;
            }
            let scope = Scope {
                env: &env,
                blocks: self.defs,
                owner: "block",
            };
            let alone = Ctxt::new();
            resolve_body(&alone, scope, &def.input, &extra, Some(body));
            for e in alone.into_errors() {
                if unused_pub && e.message.contains("needs a name") {
                    continue;
                }
                let key = format!("{:?}{:?}{}", e.span.start, e.span.end, e.render());
                if !self.seen.borrow_mut().insert(key) {
                    continue;
                }
                let note = format!(
                    "in the body of `{}`, checked on its own because no use of it could be",
                    def.name
                );
                self.cx.emit(e.with_note(note));
            }
        }
    }

    /// The names layers are written with, in every network and block body.
    fn named(&self, networks: &[crate::ast::Network]) -> HashSet<String> {
        self.named_by(networks, true)
    }

    /// The names layers are written with; spliced uses (`..Stage(..)`)
    /// only when `splices`.
    fn named_by(&self, networks: &[crate::ast::Network], splices: bool) -> HashSet<String> {
        let mut named = HashSet::new();
        let mut visit = |layer: &crate::ast::Layer| {
            if splices || layer.splice.is_none() {
                named.insert(layer.op.to_string());
            }
        };
        let bodies = networks
            .iter()
            .filter_map(|n| n.body.as_ref())
            .chain(self.defs.iter().filter_map(|d| d.body.as_ref()));
        for body in bodies {
            for e in body.exprs() {
                crate::ast::visit_layers(e, &mut visit);
            }
        }
        named
    }

    /// Reports blocks that no network and no other block names: they would
    /// never be checked.
    pub fn check_unused(&self, networks: &[crate::ast::Network]) {
        let named = self.named(networks);
        for def in self.defs {
            // A `pub` block is made for others to use: it is checked on its
            // own (`check_bodies_alone`), and never called unused.
            // An imported one was made for others too; leaving it unused
            // is no more a mistake than an unused `pub` item.
            let public = !matches!(def.vis, syn::Visibility::Inherited) || def.imported;
            if !public && !named.contains(&def.name.to_string()) && def.body.is_some() {
                self.cx.error(
                    SpanRange::single(def.name.span()),
                    format!(
                        "block `{}` is never used, so it was never checked\n\
                         help: use it in a network (`name: {}(..)`), or remove it",
                        def.name, def.name
                    ),
                );
            }
        }
    }

    /// A cycle of block uses starting at block `start`: each block on it and
    /// the span of its use of the next.
    fn cycle_from(&self, start: usize) -> Option<Vec<(usize, SpanRange)>> {
        fn uses(def: &BlockDef, defs: &[BlockDef]) -> Vec<(usize, SpanRange)> {
            let mut out = Vec::new();
            let Some(body) = &def.body else { return out };
            let mut visit = |layer: &crate::ast::Layer| {
                if let Some(b) = defs.iter().position(|d| d.name == layer.op) {
                    out.push((b, layer.span));
                }
            };
            for e in body.exprs() {
                crate::ast::visit_layers(e, &mut visit);
            }
            out
        }
        // Depth-first search for a path back to `start`.
        let mut stack: Vec<(usize, Vec<(usize, SpanRange)>)> = vec![(start, Vec::new())];
        let mut seen = vec![false; self.defs.len()];
        while let Some((b, path)) = stack.pop() {
            for (next, span) in uses(&self.defs[b], self.defs) {
                let mut p = path.clone();
                p.push((b, span));
                if next == start {
                    return Some(p);
                }
                if !seen[next] {
                    seen[next] = true;
                    stack.push((next, p));
                }
            }
        }
        None
    }

    /// Instantiates `u` on an input of shape `input`. With `report`, errors
    /// are recorded (each inside the block naming this use); without, it
    /// only answers whether the use works (a trial while searching fixes).
    /// `inputs`: the chain's tensor, then each further tensor input in the
    /// order the block declares them.
    pub fn instantiate(
        &self,
        u: &BlockUse,
        inputs: &[Shape],
        report: bool,
    ) -> Option<Rc<Instance>> {
        let shapes: Vec<String> = inputs.iter().map(|s| fmt_shape(s)).collect();
        let key = format!(
            "{}|{}|{}|{}",
            self.strict.get(),
            u.def,
            crate::resolve::fmt_args(&u.args),
            shapes.join("|")
        );
        if let Some(inst) = self.memo.borrow().get(&key) {
            return Some(inst.clone());
        }
        let inst = Rc::new(self.check_use(u, inputs, report)?);
        self.memo.borrow_mut().insert(key, inst.clone());
        Some(inst)
    }

    fn check_use(&self, u: &BlockUse, inputs: &[Shape], report: bool) -> Option<Instance> {
        let def = self.defs.get(u.def)?;
        let input = inputs.first()?;
        if self.recursive.borrow()[u.def] {
            return None;
        }
        let scratch = Ctxt::new();
        let out_cx = if report { self.cx } else { &scratch };
        if self.depth.get() >= MAX_DEPTH {
            out_cx.error(
                u.span,
                format!(
                    "blocks nest more than {MAX_DEPTH} deep here: `{}` uses itself through other blocks",
                    u.block
                ),
            );
            return None;
        }
        let mut env = bind_args(out_cx, def, u)?.env;
        // What binding needs of the input's symbols: one block symbol bound
        // to sizes that are equal only for some of them (`H` to `(H + 1)/2`
        // and to `H/2`: an even `H`).
        let mut rules = crate::shape::Constraints::default();
        bind_input(
            out_cx,
            &def.input_shape,
            "an input",
            u,
            input,
            &mut env,
            &mut rules,
        )?;
        let extra: Vec<&crate::ast::BlockParam> = def
            .params
            .iter()
            .filter(|p| p.kind == ParamKind::Tensor)
            .collect();
        if extra.len() + 1 != inputs.len() {
            return None;
        }
        for (p, given) in extra.iter().zip(&inputs[1..]) {
            let pattern = p.shape.as_ref()?;
            bind_input(
                out_cx,
                pattern,
                &format!("`{}`", p.name),
                u,
                given,
                &mut env,
                &mut rules,
            )?;
        }
        bind_late_defaults(out_cx, def, u, &mut env)?;
        let extra_names: Vec<proc_macro2::Ident> = extra.iter().map(|p| p.name.clone()).collect();
        def.body.as_ref()?;
        self.depth.set(self.depth.get() + 1);
        let inner = Ctxt::new();
        let scope = Scope {
            env: &env,
            blocks: self.defs,
            owner: "block",
        };
        let program = resolve_body(&inner, scope, &def.input, &extra_names, def.body.as_ref());
        let mut shapes = crate::infer::program(
            self,
            &def.input,
            inputs.to_vec(),
            &program,
            def.output_shape.as_ref(),
            &program.env,
            report,
            "block",
            &[],
        );
        crate::check::report(
            &inner,
            self,
            &program,
            &shapes,
            def.output_shape.as_ref(),
            &program.env,
            "block",
        );
        self.depth.set(self.depth.get() - 1);
        let errors = inner.into_errors();
        if !errors.is_empty() {
            if report {
                for e in errors {
                    // The same mistake at the same place in another use is
                    // one error, named by the first use.
                    let key = format!("{:?}{:?}{}", e.span.start, e.span.end, e.render());
                    if !self.seen.borrow_mut().insert(key) {
                        continue;
                    }
                    let note = format!("in `{}`, whose input is {}", u.label, fmt_shape(input));
                    self.cx.emit(e.with_note(note));
                }
            }
            return None;
        }
        if let Err(message) = shapes.constraints.merge(&rules) {
            out_cx.error(u.span, message);
            return None;
        }
        let output = program
            .output
            .and_then(|v| shapes.values.get(v).cloned().flatten())?;
        Some(Instance {
            program,
            shapes,
            output,
        })
    }
}

/// The block's parameters bound to the use's arguments (positional, then by
/// name), each checked for kind; defaults for the rest.
/// A use's arguments, bound: the numbers and flags by name, and the names
/// of the further tensor inputs in the order the block declares them.
pub struct Bound {
    pub env: Env,
    pub tensors: Vec<proc_macro2::Ident>,
}

pub fn bind_args(cx: &Ctxt, def: &BlockDef, u: &BlockUse) -> Option<Bound> {
    let signature = || {
        def.params
            .iter()
            .map(|p| match (&p.default, &p.shape) {
                (_, Some(s)) => format!("{}: {}", p.name, crate::declared::shape_text(s)),
                (Some(d), _) => format!("{}: {} = {d}", p.name, p.kind.name()),
                (None, _) => format!("{}: {}", p.name, p.kind.name()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut values: Vec<Option<&Value>> = vec![None; def.params.len()];
    let mut ok = true;
    let mut positional = 0;
    for arg in &u.args {
        let slot = match &arg.key {
            None => {
                if positional >= def.params.len() {
                    cx.error(
                        arg.span,
                        format!(
                            "block `{}` takes {} argument{} ({}), but {} were given\nhelp: remove `{}`",
                            def.name,
                            def.params.len(),
                            if def.params.len() == 1 { "" } else { "s" },
                            signature(),
                            u.args.len(),
                            arg.value
                        ),
                    );
                    ok = false;
                    continue;
                }
                positional += 1;
                positional - 1
            }
            Some(k) => match def.params.iter().position(|p| p.name == *k) {
                Some(i) => i,
                None => {
                    let names: Vec<String> =
                        def.params.iter().map(|p| p.name.to_string()).collect();
                    let hint = match did_you_mean(&k.to_string(), names.iter().map(String::as_str))
                    {
                        Some(s) => format!("\nhelp: did you mean `{s}`?"),
                        None => format!("\nhelp: `{}` takes ({})", def.name, signature()),
                    };
                    cx.error(
                        SpanRange::single(k.span()),
                        format!("block `{}` has no parameter `{k}`{hint}", def.name),
                    );
                    ok = false;
                    continue;
                }
            },
        };
        if values[slot].is_some() {
            cx.error(
                arg.span,
                format!("`{}` is given twice", def.params[slot].name),
            );
            ok = false;
            continue;
        }
        values[slot] = Some(&arg.value);
    }
    let mut env = Env::new();
    let mut tensors = Vec::new();
    for (p, v) in def.params.iter().zip(values) {
        let v = match (v, &p.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) if mentions_input_size(def, d) => {
                // `hidden: usize = C * t`: known once the input is bound
                // ([`bind_late_defaults`]).
                continue;
            }
            (None, Some(d)) => {
                let inner = Ctxt::new();
                match subst(&inner, &env, d) {
                    Some(v) => v,
                    None => {
                        for e in inner.into_errors() {
                            cx.emit(e.with_note(format!("in `{}`", u.label)));
                        }
                        ok = false;
                        continue;
                    }
                }
            }
            (None, None) => {
                cx.error(
                    u.span,
                    format!(
                        "block `{}` needs `{}: {}`\nhelp: `{}` takes ({})",
                        def.name,
                        p.name,
                        p.kind.name(),
                        def.name,
                        signature()
                    ),
                );
                ok = false;
                continue;
            }
        };
        if p.kind == ParamKind::Tensor {
            match &v {
                Value::Ident(i) => tensors.push(i.clone()),
                other => {
                    cx.error(
                        other.span(),
                        format!(
                            "`{}` of block `{}` is a tensor: pass the name of one (a `let` or the input), not {}",
                            p.name,
                            def.name,
                            other.kind()
                        ),
                    );
                    ok = false;
                }
            }
            continue;
        }
        let bound = match (p.kind, &v) {
            (ParamKind::Usize, Value::Int(n, _)) if *n >= 0 => Some(EnvVal::Int(*n)),
            (ParamKind::F64, Value::Int(n, _)) => Some(EnvVal::Float(*n as f64)),
            (ParamKind::F64, Value::Float(x, _)) => Some(EnvVal::Float(*x)),
            (ParamKind::Bool, Value::Bool(b, _)) => Some(EnvVal::Bool(*b)),
            _ => None,
        };
        match bound {
            Some(b) => {
                env.insert(p.name.to_string(), b);
            }
            None => {
                let found = match &v {
                    Value::Int(n, _) if *n < 0 => format!("the negative number {n}"),
                    other => format!("{} `{other}`", other.kind()),
                };
                // The value of the parameter's kind nearest to what was written.
                let near = match (p.kind, &v) {
                    (ParamKind::Usize, Value::Int(n, _)) => Some(n.unsigned_abs().to_string()),
                    (ParamKind::Usize, Value::Float(x, _)) => {
                        Some((x.abs().round() as u64).to_string())
                    }
                    (ParamKind::Usize, Value::Bool(b, _)) => Some(u64::from(*b).to_string()),
                    (ParamKind::F64, Value::Bool(b, _)) => {
                        Some(if *b { "1.0" } else { "0.0" }.to_string())
                    }
                    (ParamKind::Bool, Value::Int(n, _)) => Some((*n != 0).to_string()),
                    _ => None,
                };
                let found = match near {
                    Some(n) => format!("{found}\nhelp: write `{n}`"),
                    None => found,
                };
                cx.error(
                    v.span(),
                    format!(
                        "`{}` of block `{}` is a `{}`, but got {found}",
                        p.name,
                        def.name,
                        p.kind.name()
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(Bound { env, tensors })
}

/// Whether a parameter's default reads a size of the block's inputs
/// (`hidden: usize = C * t`), which is known only at a use.
fn mentions_input_size(def: &BlockDef, default: &Value) -> bool {
    let mut symbols = HashSet::new();
    let shapes =
        std::iter::once(&def.input_shape).chain(def.params.iter().filter_map(|p| p.shape.as_ref()));
    for shape in shapes {
        for d in &shape.dims {
            if let DimLit::Sym(s) = d {
                symbols.insert(s.to_string());
            }
        }
    }
    let mut found = false;
    default.visit_idents(&mut |i| {
        let name = i.to_string();
        found |= symbols.contains(&name) && !def.params.iter().any(|p| p.name == name);
    });
    found
}

/// The defaults that read sizes of the block's inputs, evaluated once those
/// are bound, in the order the parameters are declared.
fn bind_late_defaults(cx: &Ctxt, def: &BlockDef, u: &BlockUse, env: &mut Env) -> Option<()> {
    let mut positional = def.params.iter();
    let given: HashSet<String> = u
        .args
        .iter()
        .filter_map(|a| match &a.key {
            Some(k) => Some(k.to_string()),
            None => positional.next().map(|p| p.name.to_string()),
        })
        .collect();
    let mut ok = true;
    for p in &def.params {
        let Some(d) = &p.default else { continue };
        if given.contains(&p.name.to_string()) || !mentions_input_size(def, d) {
            continue;
        }
        let inner = Ctxt::new();
        let bound = match (p.kind, subst(&inner, env, d)) {
            (ParamKind::Usize, Some(Value::Int(n, _))) if n >= 0 => Some(EnvVal::Int(n)),
            (ParamKind::F64, Some(Value::Int(n, _))) => Some(EnvVal::Float(n as f64)),
            (ParamKind::F64, Some(Value::Float(x, _))) => Some(EnvVal::Float(x)),
            (ParamKind::Bool, Some(Value::Bool(b, _))) => Some(EnvVal::Bool(b)),
            (_, Some(v)) => {
                inner.error(
                    d.span(),
                    format!(
                        "the default of `{}` is `{d}` = {v}, but `{}` is a `{}`",
                        p.name,
                        p.name,
                        p.kind.name()
                    ),
                );
                None
            }
            (_, None) => None,
        };
        for e in inner.into_errors() {
            cx.emit(e.with_note(format!("in `{}`", u.label)));
        }
        match bound {
            Some(b) => {
                env.insert(p.name.to_string(), b);
            }
            None => ok = false,
        }
    }
    ok.then_some(())
}

/// The block's input shape matched against the incoming one: its symbols
/// bound to the incoming dims, its numbers and expressions checked.
fn bind_input(
    cx: &Ctxt,
    pattern: &crate::ast::ShapeLit,
    what: &str,
    u: &BlockUse,
    input: &Shape,
    env: &mut Env,
    rules: &mut crate::shape::Constraints,
) -> Option<()> {
    let written = crate::declared::shape_text(pattern);
    if pattern.dims.len() != input.len() {
        let what = if what == "an input" {
            "a".to_string()
        } else {
            format!("as {what} a")
        };
        cx.error(
            u.span,
            format!(
                "`{}` takes {what} {}-D input {written}, but is given {}",
                u.label,
                pattern.dims.len(),
                fmt_shape(input)
            ),
        );
        return None;
    }
    let role = if what == "an input" {
        String::new()
    } else {
        format!(" as {what}")
    };
    // Symbols bind first, so expressions may use any of them. Every symbol
    // that disagrees is named in one error.
    let mut ok = true;
    let mut conflicts = Vec::new();
    for (d, got) in pattern.dims.iter().zip(input) {
        if let DimLit::Sym(s) = d {
            match env.get(&s.to_string()) {
                None => {
                    env.insert(s.to_string(), EnvVal::Dim(got.clone()));
                }
                // Bound again: equal, or equal for some values of the
                // input's symbol (`(H + 1)/2` and `H/2`: an even `H`).
                Some(EnvVal::Dim(prev)) => {
                    let why = format!("`{}`'s input `{s}`", u.label);
                    match rules.need_equal(prev, got, &why) {
                        Ok(true) => {}
                        Ok(false) => {
                            conflicts.push((s.to_string(), prev.to_string(), got.to_string()))
                        }
                        Err(m) => {
                            cx.error(u.span, m);
                            ok = false;
                        }
                    }
                }
                Some(EnvVal::Int(n)) if Dim::Known(*n as u64) == *got => {}
                Some(prev) => {
                    let prev = match prev {
                        EnvVal::Dim(d) => d.to_string(),
                        EnvVal::Int(n) => n.to_string(),
                        EnvVal::Float(x) => x.to_string(),
                        EnvVal::Bool(b) => b.to_string(),
                        EnvVal::Failed => "unknown".to_string(),
                    };
                    conflicts.push((s.to_string(), prev, got.to_string()));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        let is: Vec<String> = conflicts
            .iter()
            .map(|(s, p, _)| format!("`{s}` is {p}"))
            .collect();
        let would: Vec<String> = conflicts
            .iter()
            .map(|(s, _, g)| format!("`{s}` would be {g}"))
            .collect();
        cx.error(
            u.span,
            format!(
                "`{}` takes {written}{role}, where {}, but is given {} ({} there)",
                u.label,
                is.join(" and "),
                fmt_shape(input),
                would.join(" and ")
            ),
        );
        ok = false;
    }
    for (axis, (d, got)) in pattern.dims.iter().zip(input).enumerate() {
        let want = match d {
            DimLit::Lit(..) | DimLit::Expr(..) => eval_dim(cx, d, env),
            _ => continue,
        };
        let Some(want) = want else {
            ok = false;
            continue;
        };
        if want != *got {
            // The features or channels: a projection before the use.
            let rank = input.len();
            let name = u.label.split(':').next().unwrap_or("block").trim();
            let project = match (&want, rank, axis) {
                (Dim::Known(n), 2, 1) | (Dim::Known(n), 3, 2) if role.is_empty() => {
                    Some(format!("{name}_proj: Linear({n})"))
                }
                (Dim::Known(n), 4, 1) if role.is_empty() => {
                    Some(format!("{name}_proj: Conv2d({n}, kernel = 1)"))
                }
                _ => None,
            };
            let help = project
                .map(|p| {
                    format!(
                        "\nhelp: project to {want} first: write `{p} -> {}`",
                        u.label
                    )
                })
                .unwrap_or_default();
            cx.error(
                u.span,
                format!(
                    "`{}` takes {written}{role}, so dim {axis} must be {want}, but is given {}{help}",
                    u.label,
                    fmt_shape(input)
                ),
            );
            ok = false;
        }
    }
    ok.then_some(())
}
