//! Checked chain to IR: the parameterised layers (struct fields and their
//! PyTorch state_dict entries), the forward steps with every number resolved,
//! and the summary table. Runs only on a network without errors.

use proc_macro2::Ident;
use syn::{Attribute, Visibility};

use crate::ast::Network;
use crate::infer::{conv_padding, pair_text, Inferred, Overrides};
use crate::resolve::{Activation, Item, Op, Padding, PoolKind};
use crate::shape::{fmt_shape, normalize_dim, Dim, Shape};

pub struct NetIr {
    pub name: Ident,
    pub vis: Visibility,
    pub attrs: Vec<Attribute>,
    pub input: Ident,
    pub input_shape: Shape,
    pub output_shape: Shape,
    pub fields: Vec<FieldIr>,
    pub steps: Vec<StepIr>,
    pub summary: String,
    pub parameters: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Conv2d,
    Linear,
}

/// A parameterised layer: a field of the generated struct.
pub struct FieldIr {
    pub name: Ident,
    pub kind: FieldKind,
    pub params: Vec<ParamIr>,
}

impl FieldIr {
    pub fn has_bias(&self) -> bool {
        self.params.len() > 1
    }
}

/// One state_dict entry.
pub struct ParamIr {
    pub name: String,
    pub shape: Vec<u64>,
    pub init: InitIr,
}

#[derive(Clone, Copy)]
pub enum InitIr {
    /// PyTorch's default weight init: kaiming_uniform(a = sqrt(5)).
    KaimingUniform { fan_in: u64 },
    /// PyTorch's default bias init: U(±1/sqrt(fan_in)).
    BiasUniform { fan_in: u64 },
}

pub struct StepIr {
    /// `conv1: Conv2d(1 -> 6, kernel 5, padding 2)  [B, 1, 28, 28] -> [B, 6, 28, 28]`
    pub comment: String,
    pub op: StepOp,
}

pub enum StepOp {
    Conv2d {
        field: Ident,
        /// `(top, bottom)`, `(left, right)`.
        pad: ((u64, u64), (u64, u64)),
        stride: (u64, u64),
        dilation: u64,
        groups: u64,
        out_ch: u64,
        bias: bool,
    },
    Pool2d {
        kind: PoolKind,
        kernel: (u64, u64),
        stride: (u64, u64),
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
    },
    Act(Activation),
    Softmax {
        dim: usize,
        log: bool,
    },
}

struct Row {
    layer: String,
    op: String,
    output: String,
    params: u64,
    macs: Option<u64>,
}

pub fn lower(net: &Network, items: &[Item], inferred: &Inferred) -> NetIr {
    let mut fields = Vec::new();
    let mut steps = Vec::new();
    let mut rows = Vec::new();
    for (i, (item, node)) in items.iter().zip(&inferred.nodes).enumerate() {
        let Item::Layer(layer) = item else { continue };
        let (Some(op), Some(input), Some(output)) = (&layer.op, &node.input, &node.output) else {
            continue;
        };
        let (desc, step, field, macs) = lower_op(layer.name.as_ref(), i, op, input, output);
        let params = field.as_ref().map_or(0, |f: &FieldIr| {
            f.params
                .iter()
                .map(|p| p.shape.iter().product::<u64>())
                .sum()
        });
        rows.push(Row {
            layer: layer.label.clone(),
            op: desc.clone(),
            output: fmt_shape(output),
            params,
            macs,
        });
        let label = match &layer.name {
            Some(n) => format!("{n}: {desc}"),
            None => desc,
        };
        steps.push(StepIr {
            comment: format!("{label}  {} -> {}", fmt_shape(input), fmt_shape(output)),
            op: step,
        });
        fields.extend(field);
    }
    let input_shape = crate::infer::shape_of(&net.input_shape);
    let output_shape = inferred.output.clone().unwrap_or_default();
    let parameters = rows.iter().map(|r| r.params).sum();
    let summary = summary_table(&net.name.to_string(), &input_shape, &rows);
    NetIr {
        name: net.name.clone(),
        vis: net.vis.clone(),
        attrs: net.attrs.clone(),
        input: net.input.clone(),
        input_shape,
        output_shape,
        fields,
        steps,
        summary,
        parameters,
    }
}

/// Multiply-adds per sample: the product of the dims after the batch dim.
fn per_sample(shape: &[Dim]) -> Option<u64> {
    shape[1..].iter().map(Dim::known).product()
}

fn lower_op(
    name: Option<&Ident>,
    index: usize,
    op: &Op,
    input: &Shape,
    output: &Shape,
) -> (String, StepOp, Option<FieldIr>, Option<u64>) {
    let field_name = |suffix: &str| {
        format!(
            "{}.{suffix}",
            name.map(|n| n.to_string()).unwrap_or_default()
        )
    };
    match op {
        Op::Conv2d(c) => {
            let cin = input[1].known().unwrap_or(0);
            let (kh, kw) = c.kernel.value;
            let g = c.groups.value;
            let cout = c.out_ch.value;
            let fan_in = cin / g * kh * kw;
            let mut params = vec![ParamIr {
                name: field_name("weight"),
                shape: vec![cout, cin / g, kh, kw],
                init: InitIr::KaimingUniform { fan_in },
            }];
            if c.bias {
                params.push(ParamIr {
                    name: field_name("bias"),
                    shape: vec![cout],
                    init: InitIr::BiasUniform { fan_in },
                });
            }
            let pad = conv_padding(c, index, Overrides::default());
            let mut desc = format!(
                "Conv2d({cin} -> {cout}, kernel {}",
                pair_text(c.kernel.value)
            );
            if c.stride.value != (1, 1) {
                desc += &format!(", stride {}", pair_text(c.stride.value));
            }
            match c.padding.value {
                Padding::Same => desc += ", padding same",
                _ if pad == ((0, 0), (0, 0)) => {}
                _ if pad.0 .0 == pad.0 .1 && pad.1 .0 == pad.1 .1 => {
                    desc += &format!(", padding {}", pair_text((pad.0 .0, pad.1 .0)))
                }
                _ => {
                    desc += &format!(
                        ", padding ({}, {}, {}, {})",
                        pad.1 .0, pad.1 .1, pad.0 .0, pad.0 .1
                    )
                }
            }
            if c.dilation.value != (1, 1) {
                desc += &format!(", dilation {}", pair_text(c.dilation.value));
            }
            if g != 1 {
                desc += &format!(", groups {g}");
            }
            if !c.bias {
                desc += ", no bias";
            }
            desc += ")";
            let macs = per_sample(output).map(|n| n * fan_in);
            let field = name.map(|n| FieldIr {
                name: n.clone(),
                kind: FieldKind::Conv2d,
                params,
            });
            let step = StepOp::Conv2d {
                field: name
                    .cloned()
                    .unwrap_or_else(|| Ident::new("missing", proc_macro2::Span::call_site())),
                pad,
                stride: c.stride.value,
                dilation: c.dilation.value.0,
                groups: g,
                out_ch: cout,
                bias: c.bias,
            };
            (desc, step, field, macs)
        }
        Op::Pool2d(p) => {
            let kind = if p.kind == PoolKind::Max {
                "MaxPool2d"
            } else {
                "AvgPool2d"
            };
            let mut desc = format!("{kind}({}", pair_text(p.kernel.value));
            if p.stride.value != p.kernel.value {
                desc += &format!(", stride {}", pair_text(p.stride.value));
            }
            desc += ")";
            let step = StepOp::Pool2d {
                kind: p.kind,
                kernel: p.kernel.value,
                stride: p.stride.value,
            };
            (desc, step, None, Some(0))
        }
        Op::Flatten { start, end } => {
            let rank = input.len();
            let s = normalize_dim(start.value, rank).unwrap_or(0);
            let e = normalize_dim(end.value, rank).unwrap_or(0);
            let desc = if (s, e) == (1, rank - 1) {
                "Flatten".to_string()
            } else {
                format!("Flatten({s}..={e})")
            };
            (
                desc,
                StepOp::Flatten {
                    start: s,
                    end: e,
                    rank,
                },
                None,
                Some(0),
            )
        }
        Op::Linear(l) => {
            let fin = input.last().and_then(Dim::known).unwrap_or(0);
            let fout = l.out_f.value;
            let mut params = vec![ParamIr {
                name: field_name("weight"),
                shape: vec![fout, fin],
                init: InitIr::KaimingUniform { fan_in: fin },
            }];
            if l.bias {
                params.push(ParamIr {
                    name: field_name("bias"),
                    shape: vec![fout],
                    init: InitIr::BiasUniform { fan_in: fin },
                });
            }
            let desc = format!(
                "Linear({fin} -> {fout}{})",
                if l.bias { "" } else { ", no bias" }
            );
            let macs = per_sample(output).map(|n| n * fin);
            let field = name.map(|n| FieldIr {
                name: n.clone(),
                kind: FieldKind::Linear,
                params,
            });
            let step = StepOp::Linear {
                field: name
                    .cloned()
                    .unwrap_or_else(|| Ident::new("missing", proc_macro2::Span::call_site())),
                bias: l.bias,
                rank: input.len(),
            };
            (desc, step, field, macs)
        }
        Op::Act(a) => {
            let desc = match a {
                Activation::Relu => "ReLU",
                Activation::Sigmoid => "Sigmoid",
                Activation::Tanh => "Tanh",
            };
            (desc.to_string(), StepOp::Act(*a), None, Some(0))
        }
        Op::Softmax { dim, log } => {
            let d = normalize_dim(dim.value, input.len()).unwrap_or(0);
            let desc = format!("{}(dim {d})", if *log { "LogSoftmax" } else { "Softmax" });
            (desc, StepOp::Softmax { dim: d, log: *log }, None, Some(0))
        }
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn summary_table(name: &str, input: &Shape, rows: &[Row]) -> String {
    let header = ["layer", "op", "output", "params", "MACs", "FLOPs"];
    let total_params: u64 = rows.iter().map(|r| r.params).sum();
    let total_macs: Option<u64> = rows.iter().map(|r| r.macs).sum();
    let fmt_macs = |m: Option<u64>, k: u64| m.map_or("?".to_string(), |m| thousands(m * k));
    let mut table: Vec<[String; 6]> = vec![header.map(String::from)];
    for r in rows {
        table.push([
            r.layer.clone(),
            r.op.clone(),
            r.output.clone(),
            thousands(r.params),
            fmt_macs(r.macs, 1),
            fmt_macs(r.macs, 2),
        ]);
    }
    table.push([
        "total".into(),
        String::new(),
        String::new(),
        thousands(total_params),
        fmt_macs(total_macs, 1),
        fmt_macs(total_macs, 2),
    ]);
    let widths: Vec<usize> = (0..6)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!(
        "{name}: input {}, {} trainable parameters; MACs and FLOPs (= 2 x MACs) per sample\n",
        fmt_shape(input),
        thousands(total_params)
    );
    for (i, r) in table.iter().enumerate() {
        let mut line = String::new();
        for c in 0..6 {
            let cell = &r[c];
            let pad = widths[c] - cell.chars().count();
            if c >= 3 {
                line += &" ".repeat(pad);
                line += cell;
            } else {
                line += cell;
                line += &" ".repeat(pad);
            }
            if c < 5 {
                line += "  ";
            }
        }
        out += line.trim_end();
        out.push('\n');
        if i == 0 || i == table.len() - 2 {
            out += &"-".repeat(widths.iter().sum::<usize>() + 10);
            out.push('\n');
        }
    }
    out
}
