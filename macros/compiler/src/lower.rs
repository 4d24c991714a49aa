//! Checked chain to IR: the parameterised layers (struct fields and their
//! PyTorch state_dict entries), the forward steps with every number resolved,
//! and the summary table. Runs only on a network without errors; the fusion
//! passes in [`passes`](crate::passes) then rewrite the steps.

use proc_macro2::{Ident, Span};
use syn::{Attribute, Visibility};

use crate::ast::Network;
use crate::block::Blocks;
use crate::infer::{Inferred, ProgramShapes};
use crate::ops;
pub use crate::ops::resize::UpsampleOut;
use crate::resolve::{
    Activation, Item, MergeKind, NodeKind, Op, PoolKind, Program, ResolvedLayer, WeightInit,
};
use crate::shape::{fmt_shape, Constraints, Shape};

/// Every block instance lowered so far, per block definition.
#[derive(Default)]
pub struct Registry {
    pub instances: Vec<Vec<NetIr>>,
}

impl Registry {
    fn add(&mut self, def: usize, ir: NetIr) -> usize {
        if self.instances.len() <= def {
            self.instances.resize_with(def + 1, Vec::new);
        }
        self.instances[def].push(ir);
        self.instances[def].len() - 1
    }
}

/// The `if` branches a node is inside: `(if id, branch taken)`.
pub type Branch = Vec<(usize, bool)>;

pub struct NetIr {
    pub name: Ident,
    pub vis: Visibility,
    pub attrs: Vec<Attribute>,
    pub input: Ident,
    pub input_shape: Shape,
    pub output_shape: Shape,
    pub fields: Vec<FieldIr>,
    /// The graph in order: chains of steps and merges, each making a value.
    pub segments: Vec<Segment>,
    /// The variable of each value (0 is the input).
    pub values: Vec<Ident>,
    /// The network's output value.
    pub output: usize,
    pub summary: String,
    /// The summary's rows, sizes symbolic as inferred (what `summary_at`
    /// evaluates), and the notes printed after its table.
    pub rows: Vec<SummaryRow>,
    pub notes: String,
    pub parameters: u64,
    /// What the fusion passes did, one line each (empty until they run).
    pub fusions: Vec<String>,
    /// How many folded weight pairs the network caches.
    pub folds: usize,
    /// The dataflow as Mermaid and DOT text (empty until rendered, after
    /// the fusion passes).
    pub mermaid: String,
    pub dot: String,
    /// The shape of each value, when known.
    pub value_shapes: Vec<Option<Shape>>,
    /// What the input's symbols must satisfy, checked at `forward`'s entry.
    pub constraints: Constraints,
    /// Multiply-adds per sample.
    pub macs: ops::Macs,
    /// For a block instance: its block's index.
    pub block: Option<usize>,
    /// For a block instance: the numbers its names stand for (parameters,
    /// then the input's known sizes, then named values, each as a number),
    /// from which the block's struct names its fields (`self.stride`).
    pub env: Vec<(String, Num)>,
    /// For a block instance: its parameters' name prefix in the network
    /// (`layer1.0.`), which a block built alone goes without.
    pub prefix: String,
    /// The input's token-id dtype (`u32`, `i64`, `u8`); `None`: floats.
    pub input_ids: Option<String>,
    /// A network's further inputs, in order: the variable the body reads,
    /// the name as written, the declared shape and the token-id dtype.
    pub extra_inputs: Vec<ExtraInput>,
    /// A network's further outputs: their values and shapes.
    pub extra_outputs: Vec<(usize, Shape)>,
}

#[derive(Clone)]
pub struct ExtraInput {
    pub ident: Ident,
    pub name: String,
    pub shape: Shape,
    pub ids: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FieldKind {
    /// A layer's parameters, in a runtime holder.
    Layer(Holder),
    /// A block use: an instance of block `def`.
    Block { def: usize, instance: usize },
}

/// The runtime type that holds a layer's parameters, with the holders of
/// its sub-layers. A parameter's member is a dotted path inside it
/// (`out_proj.weight` is the `weight` of the sub-holder `out_proj`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Holder {
    /// A type in the runtime's `layers` module (`Conv2dParams`); `None`:
    /// the field is the layer's one tensor itself, named by the layer's path
    /// alone (torchvision's `class_token`), and its member is empty.
    pub ty: Option<&'static str>,
    /// Sub-layers: `("out_proj", "LinearParams")`. A path may nest further
    /// (`"mlp.fc1"`) when its parent is listed too.
    pub subs: Vec<(&'static str, &'static str)>,
    /// Members are lists (a recurrent layer's `weight_ih.0`, `weight_ih.1`,
    /// ..): an absent member is an empty list, not `NoBias`, and the type
    /// is not generic.
    pub lists: bool,
}

impl Holder {
    /// A holder type without sub-layers.
    pub fn new(ty: &'static str) -> Self {
        Self {
            ty: Some(ty),
            subs: Vec::new(),
            lists: false,
        }
    }

    /// A holder of lists.
    pub fn lists(mut self) -> Self {
        self.lists = true;
        self
    }

    /// A field that is a bare tensor.
    pub fn tensor() -> Self {
        Self {
            ty: None,
            subs: Vec::new(),
            lists: false,
        }
    }

    /// With a sub-layer at `path`, held in `ty`.
    pub fn with_sub(mut self, path: &'static str, ty: &'static str) -> Self {
        self.subs.push((path, ty));
        self
    }
}

/// A parameterised layer: a field of the generated struct.
#[derive(Clone)]
pub struct FieldIr {
    pub ident: Ident,
    pub kind: FieldKind,
    pub params: Vec<ParamIr>,
    /// Members (dotted paths, as `ParamIr::member`) that exist in the type
    /// but not in the state_dict (`bias` with `bias = false`), set to
    /// `NoBias`.
    pub absent: Vec<&'static str>,
    /// The `if` branches the layer is inside.
    pub branch: Branch,
}

/// One state_dict entry.
#[derive(Clone)]
pub struct ParamIr {
    /// Where it lives in the layer's holder: a member (`weight`,
    /// `running_mean`), a dotted path into a sub-layer (`out_proj.weight`),
    /// or empty when the field is the tensor itself. A numeric segment
    /// indexes a list (`weight_ih.3`).
    pub member: String,
    pub name: String,
    pub shape: Vec<u64>,
    pub init: InitIr,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum InitIr {
    /// A weight: PyTorch's default kaiming_uniform(a = sqrt(5)), or the
    /// layer's `init = ..`.
    Weight {
        fan_in: u64,
        fan_out: u64,
        scheme: WeightInit,
    },
    /// PyTorch's default bias init: U(±1/sqrt(fan_in)).
    Bias {
        fan_in: u64,
    },
    Ones,
    Zeros,
    BufferZeros,
    BufferOnes,
    /// N(0, std²), `std` in millionths (ViT's position embedding: 0.02).
    Normal {
        std_1e6: u64,
    },
    /// `num_batches_tracked`: an i64 scalar buffer.
    Counter,
    /// An embedding table: N(0, 1), the padding row zeroed.
    Embedding {
        padding_idx: Option<u64>,
    },
}

impl InitIr {
    pub fn trainable(self) -> bool {
        matches!(
            self,
            InitIr::Weight { .. }
                | InitIr::Bias { .. }
                | InitIr::Ones
                | InitIr::Zeros
                | InitIr::Embedding { .. }
                | InitIr::Normal { .. }
        )
    }
}

pub enum Segment {
    /// `let dst = { steps applied to src };`
    Chain {
        src: usize,
        dst: usize,
        steps: Vec<StepIr>,
        branch: Branch,
        /// The chain ends in a recurrent layer whose final states a `let`
        /// binds: they are kept beside `dst`.
        states: bool,
    },
    Merge {
        kind: MergeIr,
        inputs: Vec<usize>,
        dst: usize,
        comment: String,
        branch: Branch,
    },
    /// `let dst = <state index of the recurrent layer ending src's chain>;`
    State {
        src: usize,
        index: usize,
        dst: usize,
        branch: Branch,
    },
    /// `let dst = src;` closing the branch of `if` `id` that was taken.
    Select {
        id: usize,
        taken: bool,
        src: usize,
        dst: usize,
        branch: Branch,
    },
}

impl Segment {
    pub fn branch(&self) -> &Branch {
        match self {
            Segment::Chain { branch, .. }
            | Segment::State { branch, .. }
            | Segment::Merge { branch, .. }
            | Segment::Select { branch, .. } => branch,
        }
    }
}

#[derive(Clone, Copy)]
pub enum MergeIr {
    Cat {
        dim: usize,
    },
    /// Centre crop to `h x w`; `None`: the second input's size, read when
    /// the network runs (a symbolic size).
    Crop {
        size: Option<(u64, u64)>,
    },
    /// Crop at an offset.
    CropAt {
        top: u64,
        left: u64,
        h: u64,
        w: u64,
    },
    /// `narrow(dim, start, len)`: a piece of a `chunk`/`split`.
    Piece {
        dim: usize,
        start: u64,
        len: u64,
    },
    Binary(crate::ast::BinOp),
}

pub struct StepIr {
    /// `conv1: Conv2d(1 -> 6, kernel 5, padding 2)`
    pub label: String,
    pub input: Shape,
    pub output: Shape,
    pub op: StepOp,
}

impl StepIr {
    pub fn comment(&self) -> String {
        format!(
            "{}  {} -> {}",
            self.label,
            fmt_shape(&self.input),
            fmt_shape(&self.output)
        )
    }
}

/// A convolution's weights prepared once for inference (packed for the
/// runtime's matrix kernel; Winograd's transform where chosen).
#[derive(Clone, Copy)]
pub struct Prepared {
    /// The slot of the network's `Fusion` that caches them (the fold's
    /// slot when a batch norm is folded in).
    pub slot: usize,
    /// Whether Winograd F(4x4, 3x3) runs: emitted as a number
    /// ([`Winograd::code`]), so that uses of one block that differ in the
    /// choice share one struct.
    pub winograd: Winograd,
}

/// The Winograd pass's choice for one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winograd {
    /// The direct lowering (not a 3x3 stride-1 convolution, or Winograd
    /// does not pay at its sizes).
    Direct,
    /// Winograd, its weight transformed when the weights are prepared.
    Chosen,
    /// Not at the sizes assumed for a symbolic batch (1) or image size
    /// (32); the runtime transforms the weight on the first call whose
    /// sizes make it pay, by the same model.
    AtRunTime,
    /// At known sizes, paying only against the gathered lowering of a CPU
    /// without AVX-512: the runtime decides as for [`Self::AtRunTime`],
    /// with the model of the CPU it runs on.
    OnCpu,
}

impl Winograd {
    /// The number the generated code passes to the runtime's
    /// `prepare_params` / `prepare_folded`: 0, 1 or 2.
    pub fn code(self) -> u64 {
        match self {
            Winograd::Direct => 0,
            Winograd::Chosen => 1,
            Winograd::AtRunTime | Winograd::OnCpu => 2,
        }
    }
}

/// A batch norm folded into the layer before it.
#[derive(Clone)]
pub struct Fold {
    pub bn: Ident,
    pub eps: f64,
    /// For the unfolded path, which also runs in training.
    pub momentum: f64,
    /// Which tensors the fold reads (its cache key): the layer's bias and
    /// the batch norm's weight and bias exist.
    pub layer_bias: bool,
    pub affine: bool,
    /// Which cached pair of the network's `Fusion` holds the folded weights.
    pub slot: usize,
}

pub enum StepOp {
    /// Reversed along `dim`, within each sequence's length when given.
    Reverse {
        dim: usize,
        lengths: Option<Ident>,
    },
    /// `RNN`, `LSTM`, `GRU`.
    Rnn(Box<crate::ops::rnn::RnnStep>),
    /// A fixed-kernel filter (`Gaussian`, `Median`, ..).
    Filter(Box<crate::ops::filter::FilterStep>),
    Conv2d {
        field: Ident,
        /// `(top, bottom)`, `(left, right)`.
        pad: ((u64, u64), (u64, u64)),
        stride: (u64, u64),
        dilation: (u64, u64),
        groups: u64,
        out_ch: u64,
        kernel: (u64, u64),
        bias: bool,
        fold: Option<Fold>,
        /// An activation applied to each output tile in the convolution's
        /// epilogue, while it is in cache.
        epilogue: Option<Activation>,
        /// A 3x3 convolution: in inference, weights prepared once and
        /// cached, for Winograd F(4x4, 3x3) where the pass chose it.
        prepared: Option<Prepared>,
    },
    Pool2d {
        kind: PoolKind,
        kernel: (u64, u64),
        stride: (u64, u64),
        padding: (u64, u64),
        dilation: (u64, u64),
        ceil_mode: bool,
        count_include_pad: bool,
    },
    AdaptivePool2d {
        kind: PoolKind,
        out: (u64, u64),
    },
    ConvTranspose2d {
        field: Ident,
        stride: (u64, u64),
        padding: (u64, u64),
        output_padding: (u64, u64),
        dilation: (u64, u64),
        groups: u64,
        bias: bool,
    },
    Upsample {
        out: UpsampleOut,
        bilinear: bool,
        align_corners: bool,
    },
    /// A block use: the field's `forward`, with the further tensor inputs.
    Block {
        field: Ident,
        extra: Vec<Ident>,
    },
    PixelShuffle {
        r: u64,
    },
    Flatten {
        start: usize,
        end: usize,
        rank: usize,
    },
    Linear {
        field: Ident,
        bias: bool,
        rank: usize,
        fold: Option<Fold>,
        /// The fusion slot of its weights prepared for inference
        /// (`passes::pack_linear`).
        prepared: Option<usize>,
        /// An activation applied by the product's kernel to each output
        /// tile in inference (`passes::activation_into_linear`).
        epilogue: Option<Activation>,
    },
    Act(Activation),
    Softmax {
        dim: usize,
        log: bool,
    },
    BatchNorm {
        field: Ident,
        eps: f64,
        momentum: f64,
        affine: bool,
        /// Folded into the layer before: runs there, only when fusion is off.
        folded: bool,
    },
    /// Identity in inference.
    Dropout {
        p: f64,
    },
    Conv1d {
        field: Ident,
        kernel: u64,
        /// `(left, right)`.
        pad: (u64, u64),
        stride: u64,
        dilation: u64,
        groups: u64,
        bias: bool,
        causal: bool,
    },
    Pool1d {
        kind: PoolKind,
        kernel: u64,
        stride: u64,
        padding: u64,
        dilation: u64,
        ceil_mode: bool,
        count_include_pad: bool,
    },
    AdaptivePool1d {
        kind: PoolKind,
        out: u64,
    },
    Transpose {
        d0: usize,
        d1: usize,
    },
    Embedding {
        field: Ident,
        /// The layer's label, for the run-time error on a bad id.
        label: String,
        padding_idx: Option<u64>,
    },
    LayerNorm {
        field: Ident,
        /// `false`: RMS norm.
        centre: bool,
        dims: usize,
        eps: f64,
        affine: bool,
        bias: bool,
    },
    MultiHeadAttention {
        field: Ident,
        heads: u64,
        causal: bool,
        dropout: f64,
        /// Cross-attention: the variable holding the memory.
        memory: Option<Ident>,
        /// The variable holding the key lengths.
        key_lengths: Option<Ident>,
        /// The variable holding a mask over the scores.
        mask: Option<Ident>,
        /// The first of its four fusion slots for the projections' prepared
        /// weights (`passes::pack_linear`).
        prepared: Option<usize>,
    },
    PatchEmbed {
        field: Ident,
        patch: u64,
    },
    ClassToken {
        field: Ident,
    },
    PosEmbedding {
        field: Ident,
    },
    SinusoidalEncoding,
    DropPath {
        p: f64,
    },
    Select {
        dim: usize,
        /// Negative: counted from the end (a size the input decides).
        index: i64,
    },
}

/// One row of the summary table, sizes symbolic as inferred.
#[derive(Clone, Debug)]
pub struct SummaryRow {
    pub layer: String,
    pub op: String,
    pub output: Shape,
    pub params: u64,
    pub macs: ops::Macs,
}

impl SummaryRow {
    /// The row printed over the declared input shape: a symbolic MACs
    /// count is `?`.
    fn cells(&self) -> netdsl_summary::Row {
        netdsl_summary::Row {
            layer: self.layer.clone(),
            op: ops::plain(&self.op),
            output: fmt_shape(&self.output),
            params: self.params,
            macs: self.macs.known(),
        }
    }
}

/// A network, with its block instances lowered into `reg`.
pub fn lower(
    net: &Network,
    program: &Program,
    shapes: &ProgramShapes,
    blocks: &Blocks,
    reg: &mut Registry,
) -> NetIr {
    let input_shape = crate::infer::shape_of(&net.input_shape);
    let mut ir = lower_graph(
        &net.name,
        &net.input,
        input_shape,
        program,
        shapes,
        "",
        blocks,
        reg,
    );
    ir.vis = net.vis.clone();
    ir.attrs = net.attrs.clone();
    ir.input_ids = net.input_ids.as_ref().map(ToString::to_string);
    for (i, node) in program.nodes.iter().enumerate() {
        if let NodeKind::Input { index } = node.kind {
            if let Some(input) = net.extra.get(index - 1) {
                ir.extra_inputs.push(ExtraInput {
                    ident: ir.values[i + 1].clone(),
                    name: input.name.to_string(),
                    shape: crate::infer::shape_of(&input.shape),
                    ids: input.ids.as_ref().map(ToString::to_string),
                });
            }
        }
    }
    ir.notes = ops::conv1d::time_notes(&ir, &|def, i| reg.instances.get(def)?.get(i));
    ir.summary += &ir.notes;
    ir
}

/// A graph (a network's or a block instance's) to IR; parameter names get
/// `prefix` (`layer1.0.`).
#[allow(clippy::too_many_arguments)]
pub fn lower_graph(
    name: &Ident,
    input: &Ident,
    input_shape: Shape,
    program: &Program,
    shapes: &ProgramShapes,
    prefix: &str,
    blocks: &Blocks,
    reg: &mut Registry,
) -> NetIr {
    let mut fields = Vec::new();
    let mut rows = Vec::new();
    let mut segments = Vec::new();
    let mut values = vec![input.clone()];
    for (i, node) in program.nodes.iter().enumerate() {
        let dst = i + 1;
        values.push(match &node.name {
            Some(n) => Ident::new(&n.to_string(), Span::mixed_site()),
            None => Ident::new(&node.ident, Span::mixed_site()),
        });
        let branch = node.branch.clone();
        match &node.kind {
            NodeKind::Chain { input, items } => {
                let (Some(src), Some(Some(inferred))) = (*input, shapes.chains.get(i)) else {
                    continue;
                };
                let mut cx = ChainCx {
                    fields: &mut fields,
                    rows: &mut rows,
                    prefix,
                    blocks,
                    reg,
                    branch: &branch,
                    values: &values,
                    shapes: &shapes.values,
                };
                let steps = lower_chain(items, inferred, &mut cx);
                segments.push(Segment::Chain {
                    src,
                    dst,
                    steps,
                    branch,
                    states: false,
                });
            }
            NodeKind::Output { src, index } => {
                let Some(src) = *src else { continue };
                let Some(made_by) = program.node_of(src) else {
                    continue;
                };
                if let NodeKind::Merge { kind, inputs, .. } = &made_by.kind {
                    // A further piece: the graph op's output `index`.
                    let inputs: Vec<usize> = inputs.iter().filter_map(|(v, _)| *v).collect();
                    merge_segment(
                        MergeSeg {
                            kind,
                            index: *index,
                            inputs,
                            dst,
                            name: node.name.as_ref(),
                            branch,
                        },
                        shapes,
                        &values,
                        &mut rows,
                        &mut segments,
                    );
                    continue;
                }
                // The chain that makes `src` keeps its states.
                let mut found = false;
                for seg in segments.iter_mut() {
                    if let Segment::Chain { dst: d, states, .. } = seg {
                        if *d == src {
                            *states = true;
                            found = true;
                        }
                    }
                }
                if found {
                    segments.push(Segment::State {
                        src,
                        index: index - 1,
                        dst,
                        branch,
                    });
                }
            }
            // A block's further tensor input: its parameter, nothing to run.
            NodeKind::Input { .. } => {}
            NodeKind::Select { id, taken, value } => {
                if let Some(src) = value {
                    segments.push(Segment::Select {
                        id: *id,
                        taken: *taken,
                        src: *src,
                        dst,
                        branch,
                    });
                }
            }
            NodeKind::Merge { kind, inputs, .. } => {
                let inputs: Vec<usize> = inputs.iter().filter_map(|(v, _)| *v).collect();
                merge_segment(
                    MergeSeg {
                        kind,
                        index: 0,
                        inputs,
                        dst,
                        name: node.name.as_ref(),
                        branch,
                    },
                    shapes,
                    &values,
                    &mut rows,
                    &mut segments,
                );
            }
        }
    }
    let output = program.output.unwrap_or(0);
    let output_shape = shapes
        .values
        .get(output)
        .cloned()
        .flatten()
        .unwrap_or_default();
    let parameters = rows.iter().map(|r| r.params).sum();
    let macs = rows
        .iter()
        .fold(ops::Macs::zero(), |acc, r: &SummaryRow| acc + &r.macs);
    let cells: Vec<netdsl_summary::Row> = rows.iter().map(SummaryRow::cells).collect();
    let summary = netdsl_summary::table(&name.to_string(), &fmt_shape(&input_shape), &cells);
    NetIr {
        name: name.clone(),
        vis: Visibility::Inherited,
        attrs: Vec::new(),
        input: input.clone(),
        input_shape,
        output_shape,
        fields,
        segments,
        values,
        output,
        summary,
        rows,
        notes: String::new(),
        parameters,
        fusions: Vec::new(),
        folds: 0,
        mermaid: String::new(),
        dot: String::new(),
        value_shapes: shapes.values.clone(),
        constraints: shapes.constraints.clone(),
        macs,
        block: None,
        env: Vec::new(),
        prefix: prefix.to_string(),
        input_ids: None,
        extra_inputs: Vec::new(),
        extra_outputs: program
            .extra_outputs
            .iter()
            .map(|v| {
                let v = v.unwrap_or(0);
                (
                    v,
                    shapes.values.get(v).cloned().flatten().unwrap_or_default(),
                )
            })
            .collect(),
    }
}

/// Where a chain's lowering puts what it makes.
struct ChainCx<'a, 'b> {
    fields: &'a mut Vec<FieldIr>,
    rows: &'a mut Vec<SummaryRow>,
    prefix: &'a str,
    blocks: &'a Blocks<'b>,
    reg: &'a mut Registry,
    branch: &'a Branch,
    /// The graph's value variables and shapes so far.
    values: &'a [Ident],
    shapes: &'a [Option<Shape>],
}

/// Output `index` of a graph op (`+`, `cat`, `crop`, a `chunk`'s piece)
/// becoming the value `dst`.
struct MergeSeg<'a> {
    kind: &'a MergeKind,
    index: usize,
    inputs: Vec<usize>,
    dst: usize,
    name: Option<&'a Ident>,
    branch: Branch,
}

/// Lowers one output of a graph op (by [`ops::merge::lower`]): its summary
/// row and its segment.
fn merge_segment(
    m: MergeSeg,
    shapes: &ProgramShapes,
    values: &[Ident],
    rows: &mut Vec<SummaryRow>,
    segments: &mut Vec<Segment>,
) {
    // Unknown shapes come only from errors, and a network with errors is
    // not lowered; should one get here, no code is better than a panic.
    let Some(out) = shapes.values.get(m.dst).cloned().flatten() else {
        return;
    };
    let Some(ins) = m
        .inputs
        .iter()
        .map(|&v| shapes.values.get(v).cloned().flatten())
        .collect::<Option<Vec<Shape>>>()
    else {
        return;
    };
    let low = ops::merge::lower(m.kind, &ins, &out, m.index);
    let label = match m.name {
        Some(n) => format!("{n} = {}", low.label),
        None => low.label.to_string(),
    };
    let args: Vec<String> = m.inputs.iter().map(|&v| values[v].to_string()).collect();
    rows.push(SummaryRow {
        layer: label,
        op: low.row_op.unwrap_or_else(|| low.op.clone()),
        output: out.clone(),
        params: 0,
        macs: ops::Macs::zero(),
    });
    segments.push(Segment::Merge {
        kind: low.ir,
        inputs: m.inputs,
        dst: m.dst,
        comment: format!("{}({})  -> {}", low.op, args.join(", "), fmt_shape(&out)),
        branch: m.branch,
    });
}

/// One chain's layers: their steps, fields and summary rows.
fn lower_chain(items: &[Item], inferred: &Inferred, cx: &mut ChainCx) -> Vec<StepIr> {
    let mut steps = Vec::new();
    for (i, (item, node)) in items.iter().zip(&inferred.nodes).enumerate() {
        let Item::Layer(layer) = item else { continue };
        let (Some(op), Some(input), Some(output)) = (&layer.op, &node.input, &node.output) else {
            continue;
        };
        let (desc, step, field, macs) = if let Op::Block(u) = op {
            let Some(lowered) = lower_block_use(layer, u, input, cx) else {
                continue;
            };
            lowered
        } else {
            let (desc, step, field, macs) =
                lower_op(layer, i, op, input, output, cx.prefix, cx.values, cx.shapes);
            let field = field.map(|f| FieldIr {
                branch: cx.branch.clone(),
                ..f
            });
            (desc, step, field, macs)
        };
        let params = field.as_ref().map_or(0, |f: &FieldIr| {
            f.params
                .iter()
                .filter(|p| p.init.trainable())
                .map(|p| p.shape.iter().product::<u64>())
                .sum()
        });
        cx.rows.push(SummaryRow {
            layer: layer.positional(),
            op: desc.clone(),
            output: output.clone(),
            params,
            macs,
        });
        // The summary keeps the op's sizes in braces (`summary_at`
        // evaluates them); the step's label is the plain text.
        let plain = ops::plain(&desc);
        let label = if layer.path.is_empty() {
            plain
        } else {
            format!("{}: {plain}", layer.label)
        };
        steps.push(StepIr {
            label,
            input: input.clone(),
            output: output.clone(),
            op: step,
        });
        cx.fields.extend(field);
    }
    steps
}

/// A number a block instance's name stands for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Num {
    /// The number as generated code's `data` carries it: an integer's
    /// two's complement, a float's bits, a bool as 0 or 1.
    pub fn bits(self) -> u64 {
        match self {
            Num::Int(v) => v as u64,
            Num::Float(v) => v.to_bits(),
            Num::Bool(v) => u64::from(v),
        }
    }
}

/// The numbers of an instance's names, in a fixed order: the block's
/// parameters as declared, then its input's dims as written, then the
/// other names (named values) by name.
fn numbers_of(def: &crate::ast::BlockDef, env: &crate::resolve::Env) -> Vec<(String, Num)> {
    use crate::resolve::EnvVal;
    let mut names: Vec<String> = def.params.iter().map(|p| p.name.to_string()).collect();
    names.extend(def.input_shape.symbols());
    let mut rest: Vec<&String> = env.keys().filter(|k| !names.contains(k)).collect();
    rest.sort();
    names.extend(rest.into_iter().cloned());
    names
        .into_iter()
        .filter_map(|n| {
            let num = match env.get(&n)? {
                EnvVal::Int(v) => Num::Int(*v),
                EnvVal::Float(v) => Num::Float(*v),
                EnvVal::Bool(v) => Num::Bool(*v),
                EnvVal::Dim(d) => Num::Int(i64::try_from(d.known()?).ok()?),
                EnvVal::Failed => return None,
            };
            Some((n, num))
        })
        .collect()
}

/// A block use: its instance lowered (and registered), a field of the
/// block's type holding every parameter of the instance.
fn lower_block_use(
    layer: &ResolvedLayer,
    u: &crate::resolve::BlockUse,
    input: &Shape,
    cx: &mut ChainCx,
) -> Option<ops::Lowered> {
    let mut inputs = vec![input.clone()];
    let mut extra = Vec::new();
    for (_, v) in &u.tensors {
        let v = (*v)?;
        inputs.push(cx.shapes.get(v).cloned().flatten()?);
        extra.push(cx.values.get(v)?.clone());
    }
    let inst = cx.blocks.instantiate(u, &inputs, false)?;
    let def = cx.blocks.defs.get(u.def)?;
    let prefix = format!("{}{}.", cx.prefix, layer.path.join("."));
    let mut sub = lower_graph(
        &def.name,
        &def.input,
        input.clone(),
        &inst.program,
        &inst.shapes,
        &prefix,
        cx.blocks,
        cx.reg,
    );
    sub.block = Some(u.def);
    sub.env = numbers_of(def, &inst.program.env);
    let params: Vec<ParamIr> = sub.fields.iter().flat_map(|f| f.params.clone()).collect();
    let macs = sub.macs.clone();
    let instance = cx.reg.add(u.def, sub);
    let ident = Ident::new(
        &field_name(&layer.path),
        layer.name.as_ref().map_or(Span::call_site(), Ident::span),
    );
    let desc = u
        .label
        .split_once(": ")
        .map_or(u.label.clone(), |(_, d)| d.to_string());
    let field = FieldIr {
        ident: ident.clone(),
        kind: FieldKind::Block {
            def: u.def,
            instance,
        },
        params,
        absent: Vec::new(),
        branch: cx.branch.clone(),
    };
    Some((
        desc,
        StepOp::Block {
            field: ident,
            extra,
        },
        Some(field),
        macs,
    ))
}

/// The struct field a module path becomes: `features.0` -> `features_0`;
/// a path that starts with a number (a block that is a `seq`) -> `_0`.
pub fn field_name(path: &[String]) -> String {
    let name = path.join("_");
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

#[allow(clippy::too_many_arguments)]
fn lower_op(
    layer: &ResolvedLayer,
    index: usize,
    op: &Op,
    input: &Shape,
    output: &Shape,
    outer: &str,
    values: &[Ident],
    value_shapes: &[Option<Shape>],
) -> ops::Lowered {
    let cx = ops::LowerCx::new(layer, index, input, output, outer, values, value_shapes);
    match op {
        // Lowered with its instance by `lower_block_use`.
        Op::Block(u) => (
            u.label.clone(),
            StepOp::Block {
                field: cx.ident,
                extra: Vec::new(),
            },
            None,
            ops::Macs::zero(),
        ),
        Op::Conv2d(c) => ops::conv::lower_conv2d(&cx, c),
        Op::Pool2d(p) => ops::pool::lower_pool2d(p),
        Op::ConvTranspose2d(c) => ops::conv::lower_conv_transpose2d(&cx, c),
        Op::Upsample(u) => ops::resize::lower_upsample(&cx, u),
        Op::PixelShuffle { r } => ops::resize::lower_pixel_shuffle(r),
        Op::Filter(f) => ops::filter::lower_filter(&cx, f),
        Op::AdaptivePool2d { kind, out } => ops::pool::lower_adaptive_pool2d(*kind, out),
        Op::Flatten { start, end } => ops::reshape::lower_flatten(&cx, start, end),
        Op::Linear(l) => ops::linear::lower_linear(&cx, l),
        Op::BatchNorm(bn) => ops::norm::lower_batch_norm(&cx, bn),
        Op::Dropout { p } => ops::dropout::lower_dropout(*p),
        Op::LayerNorm(l) => ops::layer_norm::lower_layer_norm(&cx, l),
        Op::MultiHeadAttention(m) => ops::attention::lower_mha(&cx, m),
        Op::PatchEmbed(pe) => ops::vit::lower_patch_embed(&cx, pe),
        Op::ClassToken => ops::vit::lower_class_token(&cx),
        Op::PosEmbedding => ops::vit::lower_pos_embedding(&cx),
        Op::SinusoidalEncoding => ops::vit::lower_sinusoidal(&cx),
        Op::DropPath { p } => ops::vit::lower_drop_path(*p),
        Op::Select { dim, index } => ops::vit::lower_select(&cx, dim, index),
        Op::Act(a) => ops::activation::lower_activation(*a),
        Op::Softmax { dim, log } => ops::activation::lower_softmax(&cx, dim, *log),
        Op::Conv1d(c) => ops::conv1d::lower_conv1d(&cx, c),
        Op::Pool1d(p) => ops::pool1d::lower_pool1d(p),
        Op::AdaptivePool1d { kind, out } => ops::pool1d::lower_adaptive_pool1d(*kind, out),
        Op::Transpose { d0, d1 } => ops::reshape::lower_transpose(&cx, d0, d1),
        Op::Embedding(e) => ops::embedding::lower_embedding(&cx, e),
        Op::Rnn(r) => ops::rnn::lower_rnn(&cx, r),
        Op::Reverse(r) => ops::reshape::lower_reverse(&cx, r),
    }
}
