//! The output size of a window op (convolution, pooling) over H and W, or
//! over T for the 1-D ops, PyTorch's rule per axis. A known size goes through [`Window`], so the
//! arithmetic printed in a message is the arithmetic that ran; a symbolic
//! one through the same formula on [`Lin`](crate::shape::Lin).

use crate::diag::SpanRange;
use crate::infer::Step;
use crate::infer::{FailKind, Failure};
use crate::resolve::Op;
use crate::shape::{fmt_shape, Dim, Window};

/// Name, dim, kernel, stride, (pad_lo, pad_hi), dilation, ceil_mode.
pub type Axis = (&'static str, usize, u64, u64, (u64, u64), u64, bool);

/// The window of one axis over an input of `input` rows.
fn window(&(_, _, kernel, stride, (lo, hi), dilation, ceil): &Axis, input: u64) -> Window {
    Window {
        input,
        kernel,
        stride,
        pad_lo: lo,
        pad_hi: hi,
        dilation,
        ceil,
    }
}

/// The spatial output of a window op over its axes (H and W, or T), with
/// its arithmetic.
pub fn spatial(
    cx: &Step,
    axes: &[Axis],
    kernel_span: SpanRange,
) -> Result<(Vec<Dim>, Option<String>), Failure> {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for (k, &(axis_name, axis, kernel, stride, (lo, hi), dilation, ceil)) in axes.iter().enumerate()
    {
        match &cx.input[axis] {
            Dim::Lin(l) if !ceil => {
                // floor((l + lo + hi - eff) / stride) + 1, symbolic: any
                // size PyTorch takes, at least one window.
                let eff = dilation * (kernel - 1) + 1;
                let span = l.shift(lo as i64 + hi as i64 - eff as i64);
                cx.cons.borrow_mut().need_at_least(&span, 0, &cx.why());
                let n = span.floor_div(stride).shift(1);
                lines.push((
                    axis_name,
                    if lo + hi == 0 && dilation == 1 {
                        format!("floor(({l} - {kernel}) / {stride}) + 1 = {n}")
                    } else {
                        format!(
                            "floor(({l} + {lo} + {hi} - {dilation}*({kernel}-1) - 1) / {stride}) + 1 = {n}"
                        )
                    },
                ));
                out.push(Dim::Lin(n));
            }
            s @ (Dim::Lin(_) | Dim::Sym(_)) => {
                // A window that keeps any size keeps the symbol.
                let keeps = stride == 1 && lo + hi == dilation * (kernel - 1);
                if !keeps {
                    let why = if ceil { " (with `ceil_mode`)" } else { "" };
                    return Err(cx.fail(
                        FailKind::Other,
                        cx.layer.span,
                        format!(
                            "`{}` needs a known {axis_name}{why} to compute its output size, but {axis_name} \
                             is `{s}` in {}, which only the input decides\nhelp: give the input a number there, \
                             or keep the size with stride 1 and `padding = same`",
                            cx.name(),
                            fmt_shape(cx.input)
                        ),
                    ));
                }
                out.push(s.clone());
            }
            Dim::Known(input) => {
                let w = window(&axes[k], *input);
                match w.out() {
                    Ok(n) if cx.ctx.blocks.strict.get() && w.lost(n) > 0 => {
                        let mut f = size_loss(cx, axis_name, &w, n, kernel_span);
                        // The later axes that lose rows too, in the same message.
                        for axis in &axes[k + 1..] {
                            let (name, ax) = (axis.0, axis.1);
                            let Dim::Known(input) = cx.input[ax] else {
                                continue;
                            };
                            let w = window(axis, input);
                            if let Ok(n) = w.out() {
                                if w.lost(n) > 0 {
                                    let first = f.message.lines().next().unwrap_or("").to_string();
                                    let rest = f.message[first.len()..].to_string();
                                    f.message = format!(
                                        "{first}; along {name} it leaves {} of {input} out too{rest}",
                                        w.lost(n)
                                    );
                                }
                            }
                        }
                        return Err(f);
                    }
                    Ok(n) => {
                        out.push(Dim::Known(n));
                        lines.push((axis_name, w.arithmetic()));
                    }
                    Err(e) => {
                        let is_pool = matches!(cx.layer.op, Some(Op::Pool2d(_) | Op::Pool1d(_)));
                        let spans = if dilation == 1 {
                            format!("its kernel spans {kernel}")
                        } else {
                            format!(
                                "its kernel spans {} (dilation*(kernel-1) + 1 = {dilation}*({kernel}-1) + 1)",
                                e.effective_kernel
                            )
                        };
                        let padded = if lo + hi == 0 {
                            format!("the input is only {input}")
                        } else {
                            format!(
                                "the padded input is only {} ({input} + {lo} + {hi})",
                                e.padded
                            )
                        };
                        let mut f = cx.fail(
                            FailKind::Mismatch,
                            kernel_span,
                            format!(
                                "`{}` gives no output along {axis_name}: {spans} but {padded}",
                                cx.name(),
                            ),
                        );
                        f.tail
                            .push(format!("{}: {axis_name} = {}", cx.name(), w.arithmetic()));
                        let smaller = (e.padded - 1) / dilation + 1;
                        f.help.push(if is_pool {
                            format!("use a kernel of at most {smaller}: write `{smaller}`")
                        } else {
                            let need = (e.effective_kernel - input).div_ceil(2);
                            format!(
                                "pad the input by at least {need} on each side: write `padding = {need}`, \
                                 or use a kernel of at most {smaller}"
                            )
                        });
                        return Err(f);
                    }
                }
            }
        }
    }
    let trace = match lines.as_slice() {
        [] => None,
        [(a, t)] => Some(format!("{}: {a} = {t}", cx.name())),
        [(_, h), (_, w)] if h == w => Some(format!("{}: H = W = {h}", cx.name())),
        [(a, h), (b, w)] => Some(format!("{}: {a} = {h}; {b} = {w}", cx.name())),
        _ => None,
    };
    Ok((out, trace))
}

/// Rule (strict networks): every row of the real input is in some window.
///
/// ```text
/// #[netdsl(strict)] pub Net(x: [B, 3, 57, 57]) { x -> max_pool(2) }   // row 56 is in no window
/// ```
fn size_loss(cx: &Step, axis: &str, w: &Window, out: u64, kernel_span: SpanRange) -> Failure {
    let lost = w.lost(out);
    let rows = if axis == "T" { "steps" } else { "rows" };
    let (lo, hi) = (w.pad_lo + w.input - lost, w.pad_lo + w.input - 1);
    let mut f = cx.fail(
        FailKind::Other,
        kernel_span,
        format!(
            "`{}` leaves {lost} of its {} input {rows} along {axis} out of every window \
             (strict network): {out} windows of {} with stride {} end before {}",
            cx.name(),
            w.input,
            w.effective_kernel(),
            w.stride,
            if lost == 1 {
                format!("{axis} index {}", lo - w.pad_lo)
            } else {
                format!("{axis} indices {}..={}", lo - w.pad_lo, hi - w.pad_lo)
            }
        ),
    );
    f.tail
        .push(format!("{}: {axis} = {}", cx.name(), w.arithmetic()));
    if let Some(help) = cx.ctx.blocks.strict_help.borrow().as_ref() {
        f.help.push(help.clone());
    }
    let is_pool = matches!(cx.layer.op, Some(Op::Pool2d(_) | Op::Pool1d(_)));
    let more = w.stride - (w.padded() - w.effective_kernel()) % w.stride;
    f.help.push(if is_pool && !w.ceil {
        "pool with `ceil_mode = true`, whose last window takes the rest".to_string()
    } else {
        format!("pad this layer's input by {more} more at the end, so that a window reaches them")
    });
    f
}
