//! Pass: every convolution's weights prepared once for inference (packed
//! for the runtime's matrix kernel), with Winograd F(4x4, 3x3) for the 3x3
//! convolutions where the cost model says it pays.

use super::Pass;
use crate::lower::{Prepared, StepOp, Winograd};
use crate::shape::Dim;

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
/// channels in and out, and its modelled work is under the direct
/// lowering's (AVX-512's; where it pays only against the gathered lowering
/// of CPUs without AVX-512, the runtime decides on the CPU it runs on).
/// The choice is a number in the generated code, not its
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
        let winograd = match (cin, &step.output[..]) {
            (Some(cin), [_, _, oh, ow])
                if *kernel == (3, 3)
                    && *stride == (1, 1)
                    && *dilation == (1, 1)
                    && *groups == 1
                    && cin >= 8
                    && *out_ch >= 8 =>
            {
                choose(cin, *out_ch, &step.input[0], oh, ow)
            }
            _ => Winograd::Direct,
        };
        *prepared = Some(Prepared { slot, winograd });
        let what = match winograd {
            Winograd::Direct => None,
            Winograd::Chosen => Some((
                "Winograd F(4x4, 3x3) in inference",
                "36 multiplies per 4x4 output tile and channel pair instead of 144; \
                 weights transformed once",
            )),
            Winograd::OnCpu => Some((
                "Winograd F(4x4, 3x3) in inference on CPUs without AVX-512",
                "pays against the gathered lowering, not against AVX-512's direct one; \
                 decided by the first call on the CPU it runs on, weights transformed then",
            )),
            Winograd::AtRunTime => Some((
                "Winograd F(4x4, 3x3) in inference at the sizes where it pays",
                "decided per call from the batch and image size, which are symbolic here, \
                 and the CPU; weights transformed by the first such call",
            )),
        };
        if let Some((what, why)) = what {
            // The same line at every use of a block (listed once): the
            // modelled ratio differs between uses.
            ir.fusions
                .push(super::line(&super::subject(&step.label), what, why));
        }
    }
}

/// The choice for a 3x3 stride-1 convolution of `cin -> cout` channels
/// (at least 8 each way) over `batch` images of `oh x ow` outputs.
fn choose(cin: u64, cout: u64, batch: &Dim, oh: &Dim, ow: &Dim) -> Winograd {
    let (b, h, w) = (size(batch, 1), size(oh, 32), size(ow, 32));
    if netdsl_summary::winograd_pays(cin, cout, b, h, w) {
        Winograd::Chosen
    } else if [batch, oh, ow].iter().any(|d| d.known().is_none()) {
        // Not at the sizes assumed for the unknown ones: the runtime
        // decides from each call's (ResNet-18's 7x7 layers pay at batch 8,
        // not at 1).
        Winograd::AtRunTime
    } else if netdsl_summary::winograd_pays_gathered(cin, cout, b, h, w) {
        // Only where the CPU has no direct lowering (the U-Net's 32- and
        // 64-channel layers): the runtime decides on the CPU it runs on.
        Winograd::OnCpu
    } else {
        Winograd::Direct
    }
}

#[cfg(test)]
mod tests {
    use super::{choose, Dim, Winograd};
    use netdsl_summary::winograd_costs as costs;

    /// Known sizes decide at compile time; a symbolic batch or side that
    /// does not pay at the assumed sizes leaves it to the run time.
    #[test]
    fn symbolic_sizes_leave_the_choice_to_the_run_time() {
        let n = Dim::Known;
        let b = Dim::sym("B");
        assert_eq!(choose(512, 512, &n(1), &n(7), &n(7)), Winograd::Direct);
        assert_eq!(choose(512, 512, &n(8), &n(7), &n(7)), Winograd::Chosen);
        assert_eq!(choose(512, 512, &b, &n(7), &n(7)), Winograd::AtRunTime);
        assert_eq!(choose(64, 64, &b, &n(56), &n(56)), Winograd::Chosen);
        // A symbolic side is taken as 32, where 128 channels pay and 64
        // do not.
        assert_eq!(
            choose(128, 128, &n(1), &Dim::sym("H"), &n(7)),
            Winograd::Chosen
        );
        assert_eq!(
            choose(64, 64, &n(1), &Dim::sym("H"), &n(7)),
            Winograd::AtRunTime
        );
        assert_eq!(
            choose(512, 512, &n(1), &Dim::sym("H"), &n(2)),
            Winograd::AtRunTime
        );
    }

    /// Known sizes where Winograd pays only against the gathered lowering
    /// (no AVX-512) leave the choice to the CPU; where it pays against
    /// neither, the direct lowering is chosen.
    #[test]
    fn sizes_that_pay_only_without_avx512_leave_the_choice_to_the_cpu() {
        let n = Dim::Known;
        assert_eq!(choose(32, 32, &n(1), &n(128), &n(128)), Winograd::OnCpu);
        assert_eq!(choose(64, 32, &n(1), &n(128), &n(128)), Winograd::OnCpu);
        assert_eq!(choose(16, 16, &n(1), &n(256), &n(256)), Winograd::Direct);
        assert_eq!(choose(512, 512, &n(1), &n(7), &n(7)), Winograd::Direct);
    }

    /// The measured cases (`benches/conv3x3.rs`, and each layer alone
    /// against the direct lowering): Winograd won at every VGG-16 shape
    /// and ResNet-18's layer1, lost at ResNet-18's 7x7 layer4 at batch 1
    /// (its transformed weight, 38 MB, is read for 4 tiles) and at the
    /// U-Net's 16 and 32 channels.
    #[test]
    fn the_model_agrees_with_the_measured_winners() {
        let r = |cin, cout, b, hw| {
            let (d, w) = costs(cin, cout, b, hw, hw);
            w / d
        };
        for (cin, hw) in [(64, 224), (128, 112), (256, 56), (512, 28), (512, 14)] {
            assert!(r(cin, cin, 1, hw) < 1.0, "VGG-16 {cin} at {hw}");
        }
        assert!(r(64, 64, 1, 56) < 1.0);
        assert!(r(128, 128, 1, 28) < 0.8);
        assert!(r(128, 128, 8, 28) < 0.8);
        assert!(r(256, 256, 1, 14) < 1.0, "ResNet-18 layer3 at batch 1");
        assert!(r(512, 512, 8, 7) < 0.8, "ResNet-18 layer4 at batch 8");
        assert!(r(512, 512, 1, 7) > 1.0, "ResNet-18 layer4 at batch 1");
        for (cin, cout, hw) in [(16, 16, 256), (32, 16, 256), (32, 32, 128), (64, 32, 128)] {
            let r = {
                let (d, w) = costs(cin, cout, 1, hw, hw);
                w / d
            };
            assert!(r > 1.0, "U-Net {cin} -> {cout} at {hw}");
        }
        // Against the gathered lowering (no AVX-512), measured on AVX2:
        // 16 channels over 256x256 lose, the others win.
        let g = |cin, cout, hw| {
            let (d, w) = netdsl_summary::winograd_costs_gathered(cin, cout, 1, hw, hw);
            w / d
        };
        assert!(g(16, 16, 256) > 1.0);
        for (cin, cout, hw) in [(32, 16, 256), (32, 32, 128), (64, 32, 128)] {
            assert!(
                g(cin, cout, hw) < 1.0,
                "U-Net {cin} -> {cout} at {hw}, gathered"
            );
        }
        assert!(
            g(512, 512, 7) > 1.0,
            "ResNet-18 layer4 at batch 1, gathered"
        );
    }
}
