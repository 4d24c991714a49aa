//! Pass: an activation into the convolution's epilogue.

use super::Pass;
use crate::lower::StepOp;
use crate::ops::activation::epilogue;

/// An activation right after a convolution (or after the batch norm folded
/// into it) runs in the convolution's epilogue: on each output tile while it
/// is still in cache, instead of as a pass over the whole tensor.
pub fn run(ir: &mut Pass) {
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
            // The activations the runtime's convolution applies in its epilogue.
            Some(StepOp::Act(a)) if epilogue(*a).is_some() => *a,
            _ => {
                i += 1;
                continue;
            }
        };
        let removed = ir.steps.remove(next);
        if let StepOp::Conv2d { epilogue, .. } = &mut ir.steps[i].op {
            *epilogue = Some(act);
        }
        let at = super::subject(&ir.steps[i].label);
        ir.fusions.push(super::line(
            &at,
            &format!("{} fused into its epilogue", super::subject(&removed.label)),
            "applied to each output tile while it is in cache",
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
