//! The network's dataflow as text for a picture: Mermaid (renders in
//! GitHub markdown and rustdoc-with-mermaid) and Graphviz DOT. One node per
//! tensor (the input, each `let`, each merge, the output) with its shape;
//! one edge per chain of layers (labelled with its layers) or merge input.

use crate::lower::{NetIr, Segment, StepIr};
use crate::shape::{fmt_shape, Shape};

/// `(mermaid, dot)`.
pub fn render(ir: &NetIr, shapes: &[Option<Shape>]) -> (String, String) {
    let label = |v: usize| {
        let name = ir.values[v].to_string();
        let shape = shapes
            .get(v)
            .cloned()
            .flatten()
            .map(|s| fmt_shape(&s))
            .unwrap_or_default();
        if v == ir.output && v != 0 {
            format!("output {shape}")
        } else if name.starts_with("__") {
            shape
        } else {
            format!("{name} {shape}")
        }
    };
    let mut nodes = vec![0];
    let mut edges: Vec<(usize, usize, String)> = Vec::new();
    for segment in &ir.segments {
        match segment {
            Segment::Chain {
                src, dst, steps, ..
            } => {
                nodes.push(*dst);
                edges.push((*src, *dst, chain_label(steps)));
            }
            Segment::Merge {
                inputs,
                dst,
                comment,
                ..
            } => {
                nodes.push(*dst);
                let op = comment.split('(').next().unwrap_or_default().to_string();
                for &i in inputs {
                    edges.push((i, *dst, op.clone()));
                }
            }
            Segment::State {
                src, dst, index, ..
            } => {
                nodes.push(*dst);
                let what = if *index == 0 { "h" } else { "c" };
                edges.push((*src, *dst, format!("final {what}")));
            }
            Segment::Select { src, dst, id, .. } => {
                nodes.push(*dst);
                edges.push((*src, *dst, format!("if #{id}")));
            }
        }
    }
    let mut mermaid = String::from("graph TD\n");
    let mut dot = format!(
        "digraph {} {{\n  rankdir=TB;\n  node [shape=box];\n",
        ir.name
    );
    for &v in &nodes {
        let l = label(v).replace('"', "'");
        mermaid += &format!("  v{v}[\"{l}\"]\n");
        dot += &format!("  v{v} [label=\"{l}\"];\n");
    }
    for (a, b, l) in &edges {
        let l = l.replace('"', "'");
        mermaid += &format!("  v{a} -->|\"{l}\"| v{b}\n");
        dot += &format!("  v{a} -> v{b} [label=\"{l}\"];\n");
    }
    dot += "}\n";
    (mermaid, dot)
}

/// A chain's layers by name, the first few and a count of the rest.
fn chain_label(steps: &[StepIr]) -> String {
    let names: Vec<String> = steps
        .iter()
        .map(|s| s.label.split(':').next().unwrap_or_default().to_string())
        .collect();
    let mut groups: Vec<String> = Vec::new();
    for n in names {
        // `features.0`, `features.1`, .. show once as `features`.
        let head = match n.split_once('.') {
            Some((h, rest)) if rest.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                h.to_string()
            }
            _ => n,
        };
        if groups.last() != Some(&head) {
            groups.push(head);
        }
    }
    if groups.len() > 4 {
        let more = groups.len() - 3;
        groups.truncate(3);
        groups.push(format!("+{more} more"));
    }
    groups.join(" → ")
}
