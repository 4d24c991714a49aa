//! Pass: an activation into the linear layer's kernel.

use super::Pass;
use crate::lower::StepOp;
use crate::ops::activation::epilogue;

/// An activation right after a linear layer whose weights are packed
/// (`pack_linear`) runs in its product's epilogue in inference: on each
/// output tile right after the kernel wrote it, while it is in cache,
/// instead of as a pass over the whole tensor (a transformer's FFN `ReLU`
/// or `GELU` over `[B·T, 4E]`). Training, and `set_fusion(false)`, apply it
/// after the product as written.
pub fn run(ir: &mut Pass) {
    let mut i = 0;
    while i + 1 < ir.steps.len() {
        let fusable = matches!(
            ir.steps[i].op,
            StepOp::Linear {
                prepared: Some(_),
                epilogue: None,
                ..
            }
        );
        let act = match &ir.steps[i + 1].op {
            StepOp::Act(a) if fusable && epilogue(*a).is_some() => *a,
            _ => {
                i += 1;
                continue;
            }
        };
        let removed = ir.steps.remove(i + 1);
        if let StepOp::Linear { epilogue, .. } = &mut ir.steps[i].op {
            *epilogue = Some(act);
        }
        ir.fusions.push(super::line(
            &super::subject(&ir.steps[i].label),
            &format!("{} fused into its epilogue", super::subject(&removed.label)),
            "applied to each output tile while it is in cache",
        ));
        ir.steps[i].label += &format!(" + {} (epilogue)", removed.label);
        ir.steps[i].output = removed.output;
        i += 1;
    }
}
