//! `RNN`, `LSTM`, `GRU`: PyTorch's recurrent layers, stacked and
//! bidirectional, batch-first (the DSL's `[B, T, F]`, the default) or
//! time-major, with `proj_size` for the LSTM and optional initial states
//! (`init = (h0, c0)`, tensors bound earlier). The output sequence is the
//! chain's value; the final states are bound by a `let` pattern,
//! `let (y, (h, c)) = x -> lstm: LSTM(64);` (`let (y, h) = ..` for RNN and
//! GRU). Parameter names are PyTorch's (`weight_ih_l0`,
//! `weight_hh_l1_reverse`, `weight_hr_l0`), so `nn.LSTM` state_dicts load
//! unchanged.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use crate::ast::{Layer, Value};
use crate::diag::SpanRange;
use crate::emit::usize_lit;
use crate::infer::{FailKind, Failure};
use crate::infer::{Step, StepResult};
use crate::lower::{Holder, InitIr, StepOp};
use crate::ops::args::Args;
use crate::ops::{Alias, ArgKind, ArgSpec, EmitCx, LowerCx, Lowered, OpDef};
use crate::resolve::{Op, Spanned};
use crate::shape::{fmt_shape, Dim, Shape};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// `nn.RNN`; `relu`: `nonlinearity = relu`.
    Rnn {
        relu: bool,
    },
    Lstm,
    Gru,
}

impl CellKind {
    pub fn gates(self) -> u64 {
        match self {
            CellKind::Rnn { .. } => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CellKind::Rnn { .. } => "RNN",
            CellKind::Lstm => "LSTM",
            CellKind::Gru => "GRU",
        }
    }

    /// The states a `let` binds after the output: `h`, or `(h, c)`.
    pub fn states(self) -> usize {
        if self == CellKind::Lstm {
            2
        } else {
            1
        }
    }

    /// The `let` pattern that binds everything it gives.
    pub fn pattern(self) -> &'static str {
        if self == CellKind::Lstm {
            "(y, (h, c))"
        } else {
            "(y, h)"
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rnn {
    pub cell: CellKind,
    /// `input_size` as written (`LSTM(8 -> 16)`): checked against the input.
    pub input: Option<Spanned<u64>>,
    pub hidden: Spanned<u64>,
    pub layers: Spanned<u64>,
    pub bidirectional: bool,
    pub batch_first: bool,
    pub dropout: f64,
    pub bias: bool,
    /// LSTM's `proj_size`.
    pub proj: Option<Spanned<u64>>,
    /// The tensors it reads besides its input, each with the value it
    /// names once resolved: the initial states (`h0`, and `c0` for an
    /// LSTM), then the sequence lengths when given.
    pub tensors: Vec<(Ident, Option<usize>)>,
    /// How many of `tensors` are initial states (0 or the cell's states).
    pub n_init: usize,
    /// The last of `tensors` holds the sequence lengths.
    pub lengths: bool,
}

impl Rnn {
    pub fn init(&self) -> &[(Ident, Option<usize>)] {
        &self.tensors[..self.n_init.min(self.tensors.len())]
    }

    pub fn lengths_arg(&self) -> Option<&(Ident, Option<usize>)> {
        if self.lengths {
            self.tensors.last()
        } else {
            None
        }
    }

    pub fn directions(&self) -> u64 {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// The size of `h`: `proj_size` when given, else `hidden_size`.
    pub fn out_size(&self) -> u64 {
        self.proj.map_or(self.hidden.value, |p| p.value)
    }

    /// The shape of final state `index` (0: `h`, 1: `c`) given the output
    /// sequence's shape: `[layers * directions, B, size]`.
    pub fn state_shape(&self, output: &Shape, index: usize) -> Shape {
        let batch = output
            .get(if self.batch_first { 0 } else { 1 })
            .cloned()
            .unwrap_or(Dim::Known(0));
        let size = if index == 0 {
            self.out_size()
        } else {
            self.hidden.value
        };
        vec![
            Dim::Known(self.layers.value * self.directions()),
            batch,
            Dim::Known(size),
        ]
    }
}

/// The arguments all three take.
const COMMON: [ArgSpec; 8] = [
        ArgSpec::new(
            "hidden_size",
            ArgKind::Channels,
            None,
            "the hidden state's size `H`, or `in -> H` to check the input's features",
        )
        .aka(&["hidden"]),
        ArgSpec::new("num_layers", ArgKind::Count, Some("1"), "stacked layers")
            .aka(&["layers"]),
        ArgSpec::new(
            "bidirectional",
            ArgKind::Bool,
            Some("false"),
            "run each layer forward and backward in time; the output has `2 * H` features",
        ),
        ArgSpec::new(
            "batch_first",
            ArgKind::Bool,
            Some("true"),
            "`[B, T, F]` (the DSL's layout); `false`: `[T, B, F]` (PyTorch's default)",
        ),
        ArgSpec::new(
            "dropout",
            ArgKind::Number,
            Some("0.0"),
            "dropout on each layer's output but the last, in training, in [0, 1]",
        ),
        ArgSpec::new(
            "bias",
            ArgKind::Bool,
            Some("true"),
            "learn `bias_ih_l*` and `bias_hh_l*`",
        ),
        ArgSpec::new(
            "init",
            ArgKind::Tensors,
            Some("zeros"),
            "the initial states, tensors bound earlier: `init = h0` (`init = (h0, c0)` for an LSTM), each `[layers * directions, B, H]`",
        ),
        ArgSpec::new(
            "lengths",
            ArgKind::Tensors,
            Some("none (all `T`)"),
            "each sequence's length, a `[B]` tensor bound earlier (a network input): packed-sequence semantics",
        ),
];

pub const RNN: OpDef = OpDef {
    name: "RNN",
    spellings: &["RNN", "rnn"],
    aliases: &[Alias::new("SimpleRNN", "Keras", "RNN({args})")],
    positional: &["hidden_size"],
    args: &[
        COMMON[0],
        COMMON[1],
        ArgSpec::new(
            "nonlinearity",
            ArgKind::Choice(&["tanh", "relu"]),
            Some("tanh"),
            "the cell's activation",
        ),
        COMMON[2],
        COMMON[3],
        COMMON[4],
        COMMON[5],
        COMMON[6],
        COMMON[7],
    ],
    resolve: resolve_rnn,
};

pub const LSTM: OpDef = OpDef {
    name: "LSTM",
    spellings: &["LSTM", "lstm"],
    aliases: &[Alias::new("CuDNNLSTM", "Keras", "LSTM({args})")],
    positional: &["hidden_size"],
    args: &[
        COMMON[0],
        COMMON[1],
        COMMON[2],
        COMMON[3],
        COMMON[4],
        COMMON[5],
        ArgSpec::new(
            "proj_size",
            ArgKind::Count,
            Some("0"),
            "project `h` to this size (`weight_hr_l*`); must be below `hidden_size`",
        ),
        COMMON[6],
        COMMON[7],
    ],
    resolve: resolve_rnn,
};

pub const GRU: OpDef = OpDef {
    name: "GRU",
    spellings: &["GRU", "gru"],
    aliases: &[Alias::new("CuDNNGRU", "Keras", "GRU({args})")],
    positional: &["hidden_size"],
    args: &[
        COMMON[0], COMMON[1], COMMON[2], COMMON[3], COMMON[4], COMMON[5], COMMON[6], COMMON[7],
    ],
    resolve: resolve_rnn,
};

fn resolve_rnn(a: &Args, _layer: &Layer) -> Option<Op> {
    let cell = match a.op {
        "LSTM" => CellKind::Lstm,
        "GRU" => CellKind::Gru,
        _ => CellKind::Rnn { relu: false },
    };
    let hidden = if a.get("hidden_size").is_some() {
        a.channels("hidden_size")
    } else {
        a.missing(format!(
            "`{}` needs its hidden size\nhelp: write `{}(64)`, or `{}(in -> 64)` to check the input",
            a.op, a.op, a.op
        ));
        None
    };
    let layers = a.uint_or("num_layers", 1, 1);
    let bidirectional = a.boolean("bidirectional", false);
    let batch_first = a.boolean("batch_first", true);
    let dropout = a.float("dropout", 0.0, 0.0, 1.0, true);
    let bias = a.boolean("bias", true);
    let relu = match a.get("nonlinearity") {
        None => Some(false),
        Some(Value::Ident(i)) if i == "tanh" => Some(false),
        Some(Value::Ident(i)) if i == "relu" => Some(true),
        Some(other) => {
            a.cx.error(
                other.span(),
                format!("`nonlinearity` of `RNN` is `tanh` or `relu`, found `{other}`"),
            );
            None
        }
    };
    let proj = match a.uint("proj_size", 0, Some(0)) {
        Some(Some(p)) if p.value > 0 => Some(Some(p)),
        Some(_) => Some(None),
        None => None,
    };
    let init = init_states(a, cell);
    let lengths = a.tensor("lengths", "a `[B]` tensor");
    let (hidden, layers, proj, init, lengths) = (hidden?, layers?, proj?, init?, lengths?);
    let n_init = init.len();
    let mut tensors = init;
    tensors.extend(lengths.clone().map(|l| (l, None)));
    let (input, hidden) = hidden;
    if let Some(p) = proj {
        if p.value >= hidden.value {
            a.cx.error(
                p.span,
                format!(
                    "`proj_size` must be smaller than `hidden_size` ({}), found {}\n\
                     help: write `proj_size = {}`, or drop it",
                    hidden.value,
                    p.value,
                    hidden.value / 2
                ),
            );
            return None;
        }
    }
    let cell = match cell {
        CellKind::Rnn { .. } => CellKind::Rnn { relu: relu? },
        c => c,
    };
    Some(Op::Rnn(Box::new(Rnn {
        cell,
        input,
        hidden,
        layers,
        bidirectional: bidirectional?,
        batch_first: batch_first?,
        dropout: dropout?.value,
        bias: bias?,
        proj,
        tensors,
        n_init,
        lengths: lengths.is_some(),
    })))
}

/// `init = h0` or `init = (h0, c0)`: tensor names, as many as the cell has
/// states.
fn init_states(a: &Args, cell: CellKind) -> Option<Vec<(Ident, Option<usize>)>> {
    let Some(v) = a.get("init") else {
        return Some(Vec::new());
    };
    let names: Vec<&Value> = match v {
        Value::Tuple(items, _) => items.iter().collect(),
        other => vec![other],
    };
    let want = cell.states();
    let form = if want == 2 {
        "`init = (h0, c0)`"
    } else {
        "`init = h0`"
    };
    if names.len() != want {
        a.cx.error(
            v.span(),
            format!(
                "`{}` starts from {want} state{}, but `init` gives {}\nhelp: write {form}",
                a.op,
                if want == 2 { "s (h and c)" } else { " (h)" },
                names.len()
            ),
        );
        return None;
    }
    let mut out = Vec::new();
    for n in names {
        match n {
            Value::Ident(i) => out.push((i.clone(), None)),
            other => {
                a.cx.error(
                    other.span(),
                    format!(
                        "`init` names tensors bound earlier, found {}\nhelp: write {form}",
                        other.kind()
                    ),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// `[B, T, F]` (or `[T, B, F]`) -> `[B, T, D * H_out]`; `F` known and equal
/// to a written `input_size`; initial states of the state shapes.
pub fn infer_rnn(cx: &Step, r: &Rnn) -> StepResult {
    let layout = if r.batch_first {
        "[B, T, F]"
    } else {
        "[T, B, F]"
    };
    cx.need_rank(r.cell.name(), 3, layout)?;
    if let Some(f) = crate::ops::pool1d::length_as_features(cx, 2) {
        return Err(f);
    }
    let fin = cx.known(2, "number of input features")?;
    crate::ops::linear::in_features(cx, r.input, fin, r.cell.name(), r.hidden.value)?;
    let d = r.directions();
    let h = r.out_size();
    let mut out = cx.input.clone();
    out[2] = Dim::Known(d * h);
    cx.lengths_arg(
        r.lengths_arg(),
        &out[if r.batch_first { 0 } else { 1 }],
        "length",
    )?;
    for (k, (name, value)) in r.init().iter().enumerate() {
        let want = r.state_shape(&out, k);
        let Some(got) = value.and_then(|v| cx.ctx.values.get(v).cloned().flatten()) else {
            continue;
        };
        if got != want {
            return Err(init_mismatch(cx, r, k, name, &got, &want));
        }
    }
    let features = if d == 2 {
        format!("2 * {h} = {}", 2 * h)
    } else {
        h.to_string()
    };
    let layout_out = format!("[{}, {}, {features}]", out[0], out[1]);
    let trace = format!(
        "{}: {} -> {layout_out}{}",
        cx.name(),
        fmt_shape(cx.input),
        if d == 2 {
            " (forward and backward outputs side by side)"
        } else {
            ""
        }
    );
    Ok((out, Some(trace)))
}

fn init_mismatch(cx: &Step, r: &Rnn, k: usize, name: &Ident, got: &Shape, want: &Shape) -> Failure {
    let which = if k == 0 { "hidden" } else { "cell" };
    let size = if k == 0 && r.proj.is_some() {
        "proj_size"
    } else {
        "hidden_size"
    };
    let mut f = cx.fail(
        FailKind::Other,
        SpanRange::single(name.span()),
        format!(
            "`{}` starts from the initial {which} state `{name}` of shape {}, but it must be {} \
             (layers * directions = {} * {}, batch, {size})",
            cx.name(),
            fmt_shape(got),
            fmt_shape(want),
            r.layers.value,
            r.directions()
        ),
    );
    // What would make this state fit, when its shape is three dims.
    if got.len() == 3 {
        if got[0] != want[0] {
            if let Some(n) = got[0].known() {
                let dirs = r.directions();
                if n % dirs == 0 && n / dirs >= 1 {
                    f.help.push(format!(
                        "`{name}` holds {n} layer-directions: write `num_layers = {}`, or give a state with {} of them",
                        n / dirs,
                        want[0]
                    ));
                }
            }
        }
        if got[2] != want[2] {
            if let Some(n) = got[2].known() {
                f.help.push(format!(
                    "`{name}` has size {n}: write `{size} = {n}`, or make the state {}",
                    fmt_shape(want)
                ));
            }
        }
    }
    if f.help.is_empty() {
        f.help.push(format!("make `{name}` {}", fmt_shape(want)));
    }
    f
}

/// The state_dict suffix of layer `l`, direction `d`: `l0`, `l1_reverse`.
fn suffix(l: u64, d: u64) -> String {
    format!("l{l}{}", if d == 1 { "_reverse" } else { "" })
}

/// Per layer and direction, PyTorch's `weight_ih_l{k}[_reverse]`
/// `[G·H, in]`, `weight_hh_l{k}` `[G·H, H_out]`, `bias_ih_l{k}`,
/// `bias_hh_l{k}` `[G·H]` and (LSTM with `proj_size`) `weight_hr_l{k}`
/// `[H_out, H]`, all U(±1/sqrt(H)) as PyTorch initialises them. MACs per
/// sample: `T` steps of the input and recurrent multiplies.
pub fn lower_rnn(cx: &LowerCx, r: &Rnn) -> Lowered {
    let fin = cx.input.get(2).and_then(Dim::known).unwrap_or(0);
    let (h, hout, g, d) = (r.hidden.value, r.out_size(), r.cell.gates(), r.directions());
    let init = InitIr::Bias { fan_in: h };
    let mut params = Vec::new();
    let mut macs_per_step = 0;
    for l in 0..r.layers.value {
        let input = if l == 0 { fin } else { d * hout };
        for dir in 0..d {
            let k = l * d + dir;
            let sfx = suffix(l, dir);
            params.push(cx.param_at(
                &format!("weight_ih.{k}"),
                &format!("weight_ih_{sfx}"),
                vec![g * h, input],
                init,
            ));
            params.push(cx.param_at(
                &format!("weight_hh.{k}"),
                &format!("weight_hh_{sfx}"),
                vec![g * h, hout],
                init,
            ));
            if r.bias {
                params.push(cx.param_at(
                    &format!("bias_ih.{k}"),
                    &format!("bias_ih_{sfx}"),
                    vec![g * h],
                    init,
                ));
                params.push(cx.param_at(
                    &format!("bias_hh.{k}"),
                    &format!("bias_hh_{sfx}"),
                    vec![g * h],
                    init,
                ));
            }
            if r.proj.is_some() {
                params.push(cx.param_at(
                    &format!("weight_hr.{k}"),
                    &format!("weight_hr_{sfx}"),
                    vec![hout, h],
                    init,
                ));
            }
            macs_per_step += g * h * (input + hout) + if r.proj.is_some() { h * hout } else { 0 };
        }
    }
    // Per sample: T steps of every layer's multiplies (T may be a symbol).
    let t = cx.input.get(if r.batch_first { 1 } else { 0 });
    let macs = crate::ops::Macs::term(macs_per_step, t.map(std::slice::from_ref).unwrap_or(&[]));
    let mut desc = format!("{}({fin} -> {h}", r.cell.name());
    if let CellKind::Rnn { relu: true } = r.cell {
        desc += ", relu";
    }
    if r.layers.value > 1 {
        desc += &format!(", {} layers", r.layers.value);
    }
    if r.bidirectional {
        desc += ", bidirectional";
    }
    if let Some(p) = r.proj {
        desc += &format!(", proj {}", p.value);
    }
    if !r.batch_first {
        desc += ", time-major";
    }
    if !r.bias {
        desc += ", no bias";
    }
    desc += ")";
    let step = StepOp::Rnn(Box::new(RnnStep {
        field: cx.ident.clone(),
        label: cx.layer.positional(),
        cell: r.cell,
        hidden: h,
        proj: r.proj.map_or(0, |p| p.value),
        layers: r.layers.value,
        bidirectional: r.bidirectional,
        batch_first: r.batch_first,
        dropout: r.dropout,
        init: r
            .init()
            .iter()
            .filter_map(|(_, v)| v.and_then(|v| cx.value(v)))
            .collect(),
        lengths: r
            .lengths_arg()
            .and_then(|(_, v)| v.and_then(|v| cx.value(v))),
        prepared: None,
    }));
    let mut absent = Vec::new();
    if !r.bias {
        absent.extend(["bias_ih", "bias_hh"]);
    }
    if r.proj.is_none() {
        absent.push("weight_hr");
    }
    let holder = Holder::new("RnnParams").lists();
    (desc, step, Some(cx.field(holder, params, absent)), macs)
}

/// What `forward` runs for a recurrent layer.
#[derive(Clone, Debug)]
pub struct RnnStep {
    pub field: Ident,
    pub label: String,
    pub cell: CellKind,
    pub hidden: u64,
    pub proj: u64,
    pub layers: u64,
    pub bidirectional: bool,
    pub batch_first: bool,
    pub dropout: f64,
    /// The variables holding the initial states.
    pub init: Vec<Ident>,
    /// The variable holding the sequence lengths.
    pub lengths: Option<Ident>,
    /// The fusion slot keeping an LSTM's weights packed for inference's
    /// fused step (`pack_linear`).
    pub prepared: Option<usize>,
}

/// The states variable a recurrent step leaves for a `let` pattern to read.
pub fn states_ident() -> Ident {
    quote::format_ident!("rnn_states", span = proc_macro2::Span::mixed_site())
}

/// `let (x, rnn_states) = rnn(..)`: the output sequence, and every output
/// kept for the states a `let` may bind.
pub fn emit_rnn(e: &EmitCx, s: &RnnStep) -> TokenStream {
    let p = quote!(::netdsl::__private);
    let (src, x, training, rng) = (e.src, e.x, &e.training, &e.rng);
    let f = e.env.field(&s.field);
    let label = &s.label;
    let cell = match s.cell {
        CellKind::Rnn { relu: false } => quote!(#p::Cell::RnnTanh),
        CellKind::Rnn { relu: true } => quote!(#p::Cell::RnnRelu),
        CellKind::Lstm => quote!(#p::Cell::Lstm),
        CellKind::Gru => quote!(#p::Cell::Gru),
    };
    let (hidden, proj, layers) = (usize_lit(s.hidden), usize_lit(s.proj), usize_lit(s.layers));
    let (bi, bf) = (s.bidirectional, s.batch_first);
    let dropout = Literal::f64_unsuffixed(s.dropout);
    let some = |i: Option<&Ident>| match i {
        Some(i) => quote!(::core::option::Option::Some(&#i)),
        None => quote!(::core::option::Option::None),
    };
    let (h0, c0) = (some(s.init.first()), some(s.init.get(1)));
    let lengths = some(s.lengths.as_ref());
    let states = states_ident();
    let (call, cache) = match s.prepared {
        Some(slot) => {
            let (fusion_on, slot) = (&e.fusion_on, usize_lit(slot as u64));
            (
                quote!(rnn_cached),
                quote!((#fusion_on && !#training).then_some(#p::RnnCache { fusion: &self.fusion, slot: #slot }),),
            )
        }
        None => (quote!(rnn), TokenStream::new()),
    };
    quote! {
        let (#x, #states) = {
            let out = #p::#call(
                #label,
                &#src,
                &#f,
                #p::RnnSpec {
                    cell: #cell,
                    hidden: #hidden,
                    proj: #proj,
                    layers: #layers,
                    bidirectional: #bi,
                    batch_first: #bf,
                    dropout: #dropout,
                },
                #p::RnnInputs { h0: #h0, c0: #c0, lengths: #lengths },
                #training,
                #rng,
                #cache
            )?;
            (out.output.clone(), out)
        };
    }
}
