use netdsl_runtime::candle::{Device, Tensor};
use netdsl_runtime::conv::{conv2d_prepared, prepare_conv};
use netdsl_runtime::{Conv2dSpec, Epilogue};
use std::time::Instant;
fn main() {
    let dev = Device::Cpu;
    let shapes = [
        (16usize, 16usize, 256usize),
        (24, 24, 128),
        (32, 32, 128),
        (16, 32, 128),
        (32, 64, 64),
        (64, 32, 128),
        (32, 16, 256),
        (48, 48, 64),
    ];
    for (cin, cout, hw) in shapes {
        let x = Tensor::randn(0f32, 1.0, (1, cin, hw, hw), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (cout, cin, 3, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
        let spec = Conv2dSpec {
            stride: (1, 1),
            padding: ((1, 1), (1, 1)),
            dilation: (1, 1),
            groups: 1,
        };
        let pw = prepare_conv(w.clone(), Some(b.clone()), true).unwrap();
        let pd = prepare_conv(w.clone(), Some(b.clone()), false).unwrap();
        let mut tw = vec![];
        let mut td = vec![];
        for _ in 0..11 {
            for (p, t) in [(&pw, &mut tw), (&pd, &mut td)] {
                let s = Instant::now();
                for _ in 0..10 {
                    let _ = netdsl_runtime::conv::run_on_pool(|| {
                        conv2d_prepared(&x, p, &spec, Epilogue::Relu).unwrap()
                    });
                }
                t.push(s.elapsed().as_secs_f64() * 100.0);
            }
        }
        tw.sort_by(f64::total_cmp);
        td.sort_by(f64::total_cmp);
        println!(
            "{cin}->{cout} @{hw}: winograd {:.3} ms direct {:.3} ms ratio {:.2}",
            tw[5],
            td[5],
            tw[5] / td[5]
        );
    }
}
