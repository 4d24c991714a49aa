//! Pass: every convolution's weights prepared once for inference (packed
//! for the runtime's matrix kernel), with Winograd F(4x4, 3x3) for the 3x3
//! convolutions where the cost model says it pays.

use super::Pass;
use crate::lower::{Prepared, StepOp};
use crate::shape::Dim;

/// Work of one lowering, in multiply-add equivalents.
///
/// Direct (patches gathered, one matrix product): `9 Cin Cout` per output
/// pixel, plus the weight read once (`9 Cin Cout` floats; a float read
/// from memory costs about 20 multiply-adds of time on the machines the
/// runtime was measured on).
///
/// Winograd F(4x4, 3x3), per 4x4 output tile: `36 Cin Cout` in the 36
/// channel products, about 400 per tile and channel in the input and
/// output transforms (measured: they run far below the products' rate),
/// and a transformed weight 4x the size of the direct one to read.
pub fn costs(cin: u64, cout: u64, batch: u64, oh: u64, ow: u64) -> (f64, f64) {
    let (cin, cout, b) = (cin as f64, cout as f64, batch as f64);
    let pixels = b * (oh * ow) as f64;
    let tiles = b * (oh.div_ceil(4) * ow.div_ceil(4)) as f64;
    let direct = 9.0 * cin * cout * pixels + 20.0 * 9.0 * cin * cout;
    let winograd =
        36.0 * cin * cout * tiles + 400.0 * tiles * (cin + cout) + 20.0 * 36.0 * cin * cout;
    (direct, winograd)
}

/// Sizes not known at compile time: the batch is taken as 1, an image
/// side as 32 (so a spatially symbolic network gets Winograd where its
/// channels alone make it pay).
fn size(d: &Dim, unknown: u64) -> u64 {
    d.known().unwrap_or(unknown)
}

/// Every convolution gets a cache slot for its prepared weights (its
/// fold's, when a batch norm is folded in), where the runtime keeps the
/// weight packed for its matrix kernel; Winograd is chosen where the
/// convolution is 3x3, stride-1, undilated and ungrouped, with at least 8
/// channels in and out, and its modelled work is at most 0.8x the direct
/// lowering's. The choice is a number in the generated code, not its
/// shape, so uses of one block that choose differently (ResNet's
/// `BasicBlock` at 56x56 and at 7x7) still share one struct. Training, and
/// `set_fusion(false)`, run the direct lowering.
pub fn run(ir: &mut Pass) {
    for step in ir.steps.iter_mut() {
        let StepOp::Conv2d {
            kernel,
            stride,
            dilation,
            groups,
            out_ch,
            fold,
            prepared: prepared @ None,
            ..
        } = &mut step.op
        else {
            continue;
        };
        let slot = match fold {
            Some(f) => f.slot,
            None => {
                *ir.folds += 1;
                *ir.folds - 1
            }
        };
        let cin = step.input.get(1).and_then(Dim::known);
        let chosen = match (cin, &step.output[..]) {
            (Some(cin), [_, _, oh, ow])
                if *kernel == (3, 3)
                    && *stride == (1, 1)
                    && *dilation == (1, 1)
                    && *groups == 1
                    && cin >= 8
                    && *out_ch >= 8 =>
            {
                let batch = size(&step.input[0], 1);
                let (direct, wino) = costs(cin, *out_ch, batch, size(oh, 32), size(ow, 32));
                wino <= 0.8 * direct
            }
            _ => false,
        };
        *prepared = Some(Prepared {
            slot,
            winograd: chosen,
        });
        if chosen {
            // The same line at every use of a block (listed once): the
            // modelled ratio differs between uses.
            ir.fusions.push(super::line(
                &super::subject(&step.label),
                "Winograd F(4x4, 3x3) in inference",
                "36 multiplies per 4x4 output tile and channel pair instead of 144; \
                 weights transformed once",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::costs;

    /// The measured cases (`benches/conv3x3.rs`): Winograd won at every
    /// VGG-16 shape and ResNet-18's layer1, lost at ResNet-18's 7x7
    /// layer4 at batch 1 (its transformed weight, 38 MB, is read for 4
    /// tiles).
    #[test]
    fn the_model_agrees_with_the_measured_winners() {
        let r = |cin, cout, b, hw| {
            let (d, w) = costs(cin, cout, b, hw, hw);
            w / d
        };
        for (cin, hw) in [(64, 224), (128, 112), (256, 56), (512, 28), (512, 14)] {
            assert!(r(cin, cin, 1, hw) < 0.8, "VGG-16 {cin} at {hw}");
        }
        assert!(r(64, 64, 1, 56) < 0.8);
        assert!(r(128, 128, 8, 28) < 0.8);
        assert!(r(512, 512, 1, 7) > 0.8, "ResNet-18 layer4 at batch 1");
    }
}
