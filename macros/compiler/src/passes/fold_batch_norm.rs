//! Pass: batch norm folded into the convolution or linear layer before it.

use super::Pass;
use crate::lower::{Fold, StepOp};

/// A batch norm right after a convolution or linear layer is folded into
/// it for inference: `W' = W * gamma / sqrt(var + eps)`,
/// `b' = (b - mean) * gamma / sqrt(var + eps) + beta`, computed once and
/// cached (until a source tensor is replaced). `set_fusion(false)` runs the
/// two layers as written.
pub fn run(ir: &mut Pass) {
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
        ir.fusions.push(super::line(
            &super::subject(&prev.label),
            &format!("{} folded in", super::subject(&rest[0].label)),
            "its weight and bias are rescaled once, then one layer runs",
        ));
    }
}
