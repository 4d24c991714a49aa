//! Pass: each linear filter lowered to its cheapest form.

use super::Pass;
use crate::lower::StepOp;
use crate::ops::filter::{choose, fft_len, Lowering};

/// Every linear filter (`Gaussian`, `Sobel`, `MeanFilter`, ..) runs in the
/// form the cost model of [`ops::filter`](crate::ops::filter) finds cheapest
/// for its kernel and the known sizes: a rank-one kernel as two 1-D passes
/// or two banded matrix products, a single-tap kernel as a crop, a large
/// kernel by the convolution theorem (FFT), the rest as one depthwise
/// convolution. `lowering = ..` on the layer forces one.
/// Every form gives the same result (to float rounding); a line says which
/// ran and what the others were estimated to cost.
pub fn run(ir: &mut Pass) {
    for step in ir.steps.iter_mut() {
        let StepOp::Filter(f) = &mut step.op else {
            continue;
        };
        let Some(k) = f.kernels.first() else {
            continue;
        };
        let known = |s: &[crate::shape::Dim]| Some((s[2].known()?, s[3].known()?));
        let sizes = known(&step.input).zip(known(&step.output));
        let (best, costs) = choose(k, sizes, f.border);
        let chosen = f.forced.unwrap_or(best);
        f.lowering = chosen;
        if chosen == Lowering::Direct && f.forced.is_none() {
            continue;
        }
        let name = step.label.split(':').next().unwrap_or_default();
        let why = match chosen {
            Lowering::Separable => {
                format!("rank one: two 1-D passes of {} and {} taps", k.kh, k.kw)
            }
            Lowering::Banded => format!(
                "rank one: two banded matrix products ({} and {} taps)",
                k.kh, k.kw
            ),
            Lowering::Tap => "a single non-zero tap: a crop of the padded input".to_string(),
            Lowering::Fft => match sizes {
                Some((_, (oh, ow))) => {
                    let (hp, wp) = (oh + k.kh - 1, ow + k.kw - 1);
                    format!(
                        "the convolution theorem: the padded {hp} x {wp} input times the kernel in a {} x {} transform",
                        fft_len(hp),
                        fft_len(wp)
                    )
                }
                None => "the convolution theorem: the padded input times the kernel in the frequency domain".to_string(),
            },
            Lowering::Direct => "one depthwise convolution".to_string(),
        };
        let how = if f.forced.is_some() {
            "forced by `lowering`".to_string()
        } else {
            "the cost model's choice".to_string()
        };
        let est = match sizes {
            Some(((h, w), _)) => {
                let list: Vec<String> = costs
                    .iter()
                    .map(|(l, us)| format!("{} {}", l.name(), fmt_us(*us)))
                    .collect();
                format!("; est. per {h} x {w} channel: {}", list.join(", "))
            }
            None => "; sizes unknown at compile time: fewest multiply-adds".to_string(),
        };
        ir.fusions.push(format!(
            "`{name}` {} x {} kernel -> {} ({why}), {how}{est}",
            k.kh,
            k.kw,
            chosen.name()
        ));
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} us")
    }
}
