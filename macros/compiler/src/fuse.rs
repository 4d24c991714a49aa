//! Inference fusion passes over the lowered steps, one function each. Each
//! records what it did in `NetIr::fusions`, which the generated `FUSIONS`
//! constant lists and the snapshots show.

use crate::lower::{Fold, NetIr, Segment, StepIr, StepOp};
use crate::resolve::{Activation, PoolKind};

pub fn run(ir: &mut NetIr) {
    for segment in &mut ir.segments {
        if let Segment::Chain { steps, .. } = segment {
            let mut pass = Pass {
                steps,
                fusions: &mut ir.fusions,
                folds: &mut ir.folds,
            };
            fold_batch_norm(&mut pass);
            activation_into_conv(&mut pass);
            pool_before_activation(&mut pass);
        }
    }
}

/// What a pass rewrites: one chain's steps, and the network's record of
/// fusions and count of cached folds.
struct Pass<'a> {
    steps: &'a mut Vec<StepIr>,
    fusions: &'a mut Vec<String>,
    folds: &'a mut usize,
}

/// The activations the runtime's convolution applies in its epilogue.
pub fn epilogue_supported(a: Activation) -> bool {
    matches!(
        a,
        Activation::Relu
            | Activation::LeakyRelu(_)
            | Activation::Gelu { tanh: false }
            | Activation::Silu
            | Activation::Sigmoid
    )
}

/// An activation right after a convolution (or after the batch norm folded
/// into it) runs in the convolution's epilogue: on each output tile while it
/// is still in cache, instead of as a pass over the whole tensor.
fn activation_into_conv(ir: &mut Pass) {
    let mut i = 0;
    while i < ir.steps.len() {
        let StepOp::Conv2d {
            epilogue: None,
            fold,
            ..
        } = &ir.steps[i].op
        else {
            i += 1;
            continue;
        };
        // Skip the folded batch norm, which emits nothing of its own.
        let next = if fold.is_some() { i + 2 } else { i + 1 };
        let act = match ir.steps.get(next).map(|s| &s.op) {
            Some(StepOp::Act(a)) if epilogue_supported(*a) => *a,
            _ => {
                i += 1;
                continue;
            }
        };
        let removed = ir.steps.remove(next);
        if let StepOp::Conv2d { epilogue, .. } = &mut ir.steps[i].op {
            *epilogue = Some(act);
        }
        let layer = ir.steps[i]
            .label
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        ir.fusions.push(format!(
            "{} fused into `{layer}`'s epilogue: applied to each output tile while it is in cache",
            removed.label
        ));
        ir.steps[i].label += &format!(" + {} (epilogue)", removed.label);
        // The folded batch norm's step (if any) keeps its place: its output
        // is now the activation's, which it reports.
        if next == i + 2 {
            ir.steps[i + 1].output = removed.output;
        }
        i += 1;
    }
}

/// A batch norm right after a convolution or linear layer is folded into
/// it for inference: `W' = W * gamma / sqrt(var + eps)`,
/// `b' = (b - mean) * gamma / sqrt(var + eps) + beta`, computed once and
/// cached (until a source tensor is replaced). `set_fusion(false)` runs the
/// two layers as written.
fn fold_batch_norm(ir: &mut Pass) {
    for i in 1..ir.steps.len() {
        let (before, rest) = ir.steps.split_at_mut(i);
        let prev = &mut before[i - 1];
        let StepOp::BatchNorm {
            field: bn,
            eps,
            momentum,
            affine,
            folded,
        } = &mut rest[0].op
        else {
            continue;
        };
        let (fold, layer_bias) = match &mut prev.op {
            StepOp::Conv2d { fold, bias, .. } if fold.is_none() => (fold, *bias),
            // BatchNorm1d normalises dim 1; that is a linear layer's output
            // features only when its output has rank 2.
            StepOp::Linear {
                fold,
                bias,
                rank: 2,
                ..
            } if fold.is_none() => (fold, *bias),
            _ => continue,
        };
        *fold = Some(Fold {
            bn: bn.clone(),
            eps: *eps,
            momentum: *momentum,
            layer_bias,
            affine: *affine,
            slot: *ir.folds,
        });
        *folded = true;
        *ir.folds += 1;
        let layer = prev.label.split(':').next().unwrap_or_default().to_string();
        ir.fusions.push(format!(
            "`{bn}` folded into `{layer}`: its weight and bias are rescaled once, then one layer runs",
            bn = rest[0].label.split(':').next().unwrap_or_default()
        ));
    }
}

/// A monotone activation right before a max pooling is moved after it:
/// `max(f(a), f(b)) = f(max(a, b))` for non-decreasing `f`, so the result is
/// identical and the activation runs on the pooled (smaller) tensor.
fn pool_before_activation(ir: &mut Pass) {
    for i in 0..ir.steps.len().saturating_sub(1) {
        let monotone = matches!(ir.steps[i].op, StepOp::Act(a) if a.is_monotone());
        let max_pool = matches!(
            ir.steps[i + 1].op,
            StepOp::Pool2d {
                kind: PoolKind::Max,
                ..
            } | StepOp::AdaptivePool2d {
                kind: PoolKind::Max,
                ..
            }
        );
        if !(monotone && max_pool) {
            continue;
        }
        ir.steps.swap(i, i + 1);
        let pooled = ir.steps[i].output.clone();
        let input = ir.steps[i + 1].input.clone();
        ir.steps[i].input = input;
        ir.steps[i + 1].input = pooled.clone();
        ir.steps[i + 1].output = pooled;
        let ratio = ratio(&ir.steps[i].input, &ir.steps[i].output);
        let after = match i.checked_sub(1).map(|j| &ir.steps[j].label) {
            Some(label) => format!(" after `{}`", label.split(':').next().unwrap_or_default()),
            None => String::new(),
        };
        ir.fusions.push(format!(
            "{}{after} moved behind {}: identical result, the activation runs on {ratio}x fewer values",
            ir.steps[i + 1].label,
            ir.steps[i].label
        ));
    }
}

fn ratio(a: &[crate::shape::Dim], b: &[crate::shape::Dim]) -> String {
    let n = |s: &[crate::shape::Dim]| s[1..].iter().map(|d| d.known()).product::<Option<u64>>();
    match (n(a), n(b)) {
        (Some(x), Some(y)) if y > 0 => format!("{:.1}", x as f64 / y as f64)
            .trim_end_matches(".0")
            .to_string(),
        _ => "several times".to_string(),
    }
}
