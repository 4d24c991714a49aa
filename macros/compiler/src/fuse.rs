//! Inference fusion passes over the lowered steps, one function each. Each
//! records what it did in `NetIr::fusions`, which the generated `FUSIONS`
//! constant lists and the snapshots show.

use crate::lower::{Fold, NetIr, StepOp};
use crate::resolve::PoolKind;

pub fn run(ir: &mut NetIr) {
    fold_batch_norm(ir);
    pool_before_activation(ir);
}

/// A batch norm right after a convolution or linear layer is folded into
/// it for inference: `W' = W * gamma / sqrt(var + eps)`,
/// `b' = (b - mean) * gamma / sqrt(var + eps) + beta`, computed once and
/// cached (until a source tensor is replaced). `set_fusion(false)` runs the
/// two layers as written.
fn fold_batch_norm(ir: &mut NetIr) {
    for i in 1..ir.steps.len() {
        let (before, rest) = ir.steps.split_at_mut(i);
        let prev = &mut before[i - 1];
        let StepOp::BatchNorm {
            field: bn,
            eps,
            momentum,
            folded,
        } = &mut rest[0].op
        else {
            continue;
        };
        let fold = match &mut prev.op {
            StepOp::Conv2d { fold, .. } | StepOp::Linear { fold, .. } if fold.is_none() => fold,
            _ => continue,
        };
        *fold = Some(Fold {
            bn: bn.clone(),
            eps: *eps,
            momentum: *momentum,
            slot: ir.folds,
        });
        *folded = true;
        ir.folds += 1;
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
fn pool_before_activation(ir: &mut NetIr) {
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
