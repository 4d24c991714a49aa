//! Pass: a monotone activation moved behind the max pooling after it.

use super::Pass;
use crate::lower::StepOp;
use crate::resolve::PoolKind;

/// A monotone activation right before a max pooling is moved after it:
/// `max(f(a), f(b)) = f(max(a, b))` for non-decreasing `f`, so the result is
/// identical and the activation runs on the pooled (smaller) tensor.
pub fn run(ir: &mut Pass) {
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
        let at = match i.checked_sub(1).map(|j| &ir.steps[j].label) {
            Some(label) => super::subject(label),
            None => "the input".to_string(),
        };
        ir.fusions.push(super::line(
            &at,
            &format!(
                "{} moved behind {}",
                super::subject(&ir.steps[i + 1].label),
                super::subject(&ir.steps[i].label)
            ),
            &format!("identical result, the activation runs on {ratio}x fewer values"),
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
