//! Pass: the weights of every linear layer and attention projection
//! prepared once for inference and kept in the fusion cache.
//!
//! In inference, `linear_prepared` runs a layer of more than 4 rows on the
//! runtime's packed matrix kernel, whose weight layout (panels of 16 or 32
//! output columns) costs a pass over the weight to make. Packing per call
//! pays only from about 512 rows (a ViT-B/16 weight took 2.4-4.1 ms to
//! pack, against 3.3-3.6 ms for its product at batch 1); packed once, the
//! kernel runs at every row count above 4. The packed copy is made on the
//! first call that needs it (never for a classifier run only at batch 1,
//! whose matrix-vector products read the weight as it is) and remade when
//! a weight tensor is replaced; training, and `set_fusion(false)`, run the
//! layers as written.
//!
//! An LSTM without `proj_size` gets a slot too: inference's fused step
//! (`runtime/src/lstm_step.rs`, with AVX-512) packs `W_ih` and `W_hh`
//! together for each thread's hidden units, which costs about as much as
//! one step of the product: once per layer instead of on every call, so a
//! generation loop that runs one step per call does not pay it per step.

use super::Pass;
use crate::lower::StepOp;
use crate::ops::rnn::CellKind;

/// Slots of one multi-head attention: the query's projection (or Q, K and
/// V stacked), the key's (or K and V stacked), the value's, the output's.
const ATTENTION_SLOTS: usize = 4;

pub fn run(ir: &mut Pass) {
    for step in ir.steps.iter_mut() {
        let (slots, what) = match &mut step.op {
            StepOp::Linear {
                fold: None,
                prepared: prepared @ None,
                ..
            } => (prepared, 1),
            StepOp::MultiHeadAttention {
                prepared: prepared @ None,
                ..
            } => (prepared, ATTENTION_SLOTS),
            StepOp::Rnn(r) if r.prepared.is_none() && r.cell == CellKind::Lstm && r.proj == 0 => {
                r.prepared = Some(*ir.folds);
                *ir.folds += 1;
                ir.fusions.push(super::line(
                    &super::subject(&step.label),
                    "weights packed once for the fused LSTM step",
                    "in inference with AVX-512, no packing per call",
                ));
                continue;
            }
            _ => continue,
        };
        *slots = Some(*ir.folds);
        *ir.folds += what;
        ir.fusions.push(super::line(
            &super::subject(&step.label),
            "weights packed once for the matrix kernel",
            "in inference above 4 rows, no packing per call",
        ));
    }
}
