//! The inference fusion passes, one file each, run over every lowered graph
//! after lowering and before emission. Each rewrites a chain's steps and
//! records what it did in `NetIr::fusions`, which the generated `FUSIONS`
//! constant lists (and the snapshots show). A block instance's fusions are
//! listed in each graph that uses it, under the block's name.
//!
//! To add a pass: a file here with `pub fn run(ir: &mut Pass)`, and a line
//! in [`PASSES`] (the order they run in).

pub mod activation_into_conv;
pub mod activation_into_linear;
pub mod filter_lowering;
pub mod fold_batch_norm;
pub mod pack_linear;
pub mod pool_before_activation;
pub mod winograd;

use crate::lower::{FieldKind, NetIr, Registry, Segment, StepIr};

/// What a pass rewrites: one chain's steps, and the graph's record of
/// fusions and count of cached folds.
pub struct Pass<'a> {
    pub steps: &'a mut Vec<StepIr>,
    pub fusions: &'a mut Vec<String>,
    pub folds: &'a mut usize,
}

/// A pass: rewrites one chain.
pub type PassFn = fn(&mut Pass);

/// One line of `FUSIONS`, in the form every pass uses:
/// `` `conv1`: ReLU fused into its epilogue (applied to ..) ``: where it
/// happened (the layer, in backticks), what moved, and why it pays.
pub fn line(at: &str, what: &str, why: &str) -> String {
    format!("{at}: {what} ({why})")
}

/// How a fusion line names a step: a named layer by its name in backticks
/// (`` `bn1` ``, `` `features.1` ``), an unnamed one by its op (`ReLU`).
pub fn subject(label: &str) -> String {
    match label.split_once(": ") {
        Some((name, _)) => format!("`{name}`"),
        None => label.to_string(),
    }
}

/// The passes, by name, in the order they run.
pub const PASSES: &[(&str, PassFn)] = &[
    ("fold_batch_norm", fold_batch_norm::run),
    ("activation_into_conv", activation_into_conv::run),
    ("pool_before_activation", pool_before_activation::run),
    ("filter_lowering", filter_lowering::run),
    ("winograd", winograd::run),
    ("pack_linear", pack_linear::run),
    ("activation_into_linear", activation_into_linear::run),
];

/// Runs every pass over the networks and every block instance, then lists
/// each block instance's fusions in the graphs that use it.
pub fn run(networks: &mut [&mut NetIr], reg: &mut Registry) {
    for ir in networks.iter_mut() {
        run_own(ir);
    }
    for ir in reg.instances.iter_mut().flatten() {
        run_own(ir);
    }
    let listed: Vec<Vec<Vec<String>>> = reg
        .instances
        .iter()
        .map(|instances| instances.iter().map(|ir| listing(ir, reg)).collect())
        .collect();
    for ir in networks.iter_mut() {
        ir.fusions = listing(ir, reg);
    }
    for (instances, listed) in reg.instances.iter_mut().zip(listed) {
        for (ir, fusions) in instances.iter_mut().zip(listed) {
            ir.fusions = fusions;
        }
    }
}

/// The passes over one graph's own chains.
fn run_own(ir: &mut NetIr) {
    for segment in &mut ir.segments {
        if let Segment::Chain { steps, .. } = segment {
            let mut pass = Pass {
                steps,
                fusions: &mut ir.fusions,
                folds: &mut ir.folds,
            };
            for (_, run) in PASSES {
                run(&mut pass);
            }
        }
    }
}

/// A graph's fusions: those of the block instances it uses (each once,
/// after the block's name in brackets), then its own.
fn listing(ir: &NetIr, reg: &Registry) -> Vec<String> {
    let mut lines = Vec::new();
    for f in &ir.fields {
        let FieldKind::Block { def, instance } = f.kind else {
            continue;
        };
        let Some(inner) = reg.instances.get(def).and_then(|i| i.get(instance)) else {
            continue;
        };
        for line in listing(inner, reg) {
            let line = format!("[{}] {line}", inner.name);
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    lines.extend(ir.fusions.iter().cloned());
    lines
}
