//! 3x3 stride-1 convolutions at the shapes of VGG-16, ResNet-18 and the
//! U-Net: the runtime's direct (im2col + `gemm`) lowering against Winograd
//! F(4x4, 3x3) through prepared weights, the two timed alternately, round by
//! round, in the same process:
//!
//! ```text
//! cargo bench --bench conv3x3 -- 9
//! ```
//!
//! prints one line per shape: the median time of each side over the rounds
//! (ms) and the median of the per-round ratios; the last two columns time
//! the forward as a training step runs it, with weights that track
//! gradients: Winograd with the weights transformed in every call where
//! `winograd::pays_per_call` says so, else the direct lowering.

use netdsl::candle::{Device, Tensor};
use netdsl_runtime::{conv2d, conv2d_prepared, prepare_conv, Conv2dSpec, Epilogue};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> R<()> {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(7);
    let shapes: [(&str, usize, usize, usize, usize); 11] = [
        ("VGG-16 conv1_2", 1, 64, 224, 64),
        ("VGG-16 conv2_2", 1, 128, 112, 128),
        ("VGG-16 conv3_2", 1, 256, 56, 256),
        ("VGG-16 conv4_2", 1, 512, 28, 512),
        ("VGG-16 conv5_2", 1, 512, 14, 512),
        ("ResNet-18 layer1 b1", 1, 64, 56, 64),
        ("ResNet-18 layer4 b1", 1, 512, 7, 512),
        ("ResNet-18 layer2 b8", 8, 128, 28, 128),
        ("ResNet-18 layer3 b8", 8, 256, 14, 256),
        ("ResNet-18 layer4 b8", 8, 512, 7, 512),
        ("U-Net 256 enc1", 1, 32, 256, 32),
    ];
    let dev = Device::Cpu;
    let spec = Conv2dSpec {
        stride: (1, 1),
        padding: ((1, 1), (1, 1)),
        dilation: (1, 1),
        groups: 1,
    };
    println!(
        "shape | direct ms | Winograd ms | Winograd / direct (median of rounds) | \
         training forward ms | training / direct"
    );
    for (name, b, c, hw, cout) in shapes {
        let x = Tensor::randn(0f32, 1.0, (b, c, hw, hw), &dev)?;
        let w = Tensor::randn(0f32, 0.05, (cout, c, 3, 3), &dev)?;
        let bias = Tensor::randn(0f32, 0.1, cout, &dev)?;
        let p = prepare_conv(w.clone(), Some(bias.clone()), true)?;
        let direct = || conv2d(&x, &w, Some(&bias), &spec, Epilogue::Relu);
        let wino = || conv2d_prepared(&x, &p, &spec, Epilogue::Relu);
        // As a training step runs it: weights that track gradients, which
        // run Winograd with the weights transformed in the call where
        // `winograd::pays_per_call` says so, else direct.
        let tracked = netdsl::candle::Var::from_tensor(&w)?;
        let per_call = || conv2d(&x, tracked.as_tensor(), Some(&bias), &spec, Epilogue::Relu);
        // warm-up, and the same answer
        let (a, e) = (wino()?, direct()?);
        let diff = (a - e)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let time = |f: &dyn Fn() -> netdsl_runtime::Result<Tensor>| -> R<f64> {
            let t = std::time::Instant::now();
            let mut n = 0;
            while n < 3 || t.elapsed().as_secs_f64() < 0.05 {
                f()?;
                n += 1;
            }
            Ok(t.elapsed().as_secs_f64() * 1e3 / n as f64)
        };
        let (mut d, mut wg, mut r) = (Vec::new(), Vec::new(), Vec::new());
        let (mut pc, mut rp) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let (td, tw, tp) = if round % 2 == 0 {
                let td = time(&direct)?;
                let tw = time(&wino)?;
                (td, tw, time(&per_call)?)
            } else {
                let tp = time(&per_call)?;
                let tw = time(&wino)?;
                (time(&direct)?, tw, tp)
            };
            d.push(td);
            wg.push(tw);
            pc.push(tp);
            r.push(tw / td);
            rp.push(tp / td);
        }
        println!(
            "{name} [{b}, {c}, {hw}, {hw}] -> {cout} | {:.2} | {:.2} | {:.2} (max |diff| {diff:.1e}) | {:.2} | {:.2}",
            median(&mut d),
            median(&mut wg),
            median(&mut r),
            median(&mut pc),
            median(&mut rp)
        );
    }
    Ok(())
}
