//! The filter ops written in `network!` (`Gaussian`, `Sobel`, `MeanFilter`,
//! `Laplacian`, `Median`, `Shift`, `Impulse`, `Filter`), against SciPy and
//! PyTorch, and the lowering the compiler chooses for them.
//!
//! The fixture is `tests/fixtures/filters.safetensors` from
//! `scripts/gen_filter_fixtures.py` (see `runtime/tests/filter_parity.rs`
//! for its layout): each network below is the op of the case it names,
//! checked within 1e-5 of the reference's scale. The kernels here are the
//! compiler's own (it computes a Gaussian's values from `sigma`), so this
//! checks them too.

mod common;

use netdsl::candle::{Device, Tensor, Var};
use netdsl::network;

use common::{rel_err, tensors};

network! {
    /// scipy.ndimage.gaussian_filter(sigma = 1) with its default radius 4.
    GaussSymmetric(x: [B, 2, 12, 13]) -> [B, 2, 12, 13] {
        x -> blur: Gaussian(1.0, border = symmetric)
    }
    GaussSymmetricWide(x: [B, 2, 5, 7]) -> [B, 2, 5, 7] {
        x -> blur: Gaussian(1.5, border = symmetric)
    }
    GaussK7(x: [B, 2, 9, 11]) -> [B, 2, 9, 11] {
        x -> blur: Gaussian(sigma = 2, size = 7)
    }
    GaussK7Separable(x: [B, 2, 9, 11]) -> [B, 2, 9, 11] {
        x -> blur: Gaussian(sigma = 2, size = 7, lowering = separable)
    }
    GaussK7Banded(x: [B, 2, 9, 11]) -> [B, 2, 9, 11] {
        x -> blur: Gaussian(sigma = 2, size = 7, lowering = banded)
    }
    GaussK7Direct(x: [B, 2, 9, 11]) -> [B, 2, 9, 11] {
        x -> blur: Gaussian(sigma = 2, size = 7, lowering = direct)
    }
    GaussK7Fft(x: [B, 2, 9, 11]) -> [B, 2, 9, 11] {
        x -> blur: Gaussian(sigma = 2, size = 7, lowering = fft)
    }
    /// A kernel that is not rank one, forced through the FFT, on a
    /// `circular` border with a `valid` output.
    LaplacianFftValid(x: [B, 2, 7, 8]) -> [B, 2, 5, 6] {
        x -> lap: Laplacian(border = circular, padding = valid, lowering = fft)
    }
    LaplacianValid(x: [B, 2, 7, 8]) -> [B, 2, 5, 6] {
        x -> lap: Laplacian(border = circular, padding = valid)
    }
    GaussReplicate(x: [B, 2, 8, 7]) -> [B, 2, 8, 7] {
        x -> Gaussian(0.7, border = replicate)
    }
    GaussCircularValid(x: [B, 2, 9, 8]) -> [B, 2, 5, 4] {
        x -> Gaussian(1.0, size = 5, border = circular, padding = valid)
    }
    Mean3(x: [B, 2, 7, 9]) -> [B, 2, 7, 9] {
        x -> MeanFilter(3, border = zeros)
    }
    Mean5(x: [B, 2, 9, 11]) -> [B, 2, 9, 11] {
        x -> box_filter(5)
    }
    SobelXSym(x: [B, 2, 7, 9]) -> [B, 2, 7, 9] {
        x -> Sobel(x, border = symmetric)
    }
    SobelXCircular(x: [B, 2, 7, 9]) -> [B, 2, 7, 9] {
        x -> sobel(x, border = circular)
    }
    SobelYZeros(x: [B, 2, 8, 6]) -> [B, 2, 8, 6] {
        x -> Sobel(y, border = zeros)
    }
    /// The Sobel y kernel written out: the same as `Sobel(y)`.
    SobelYWritten(x: [B, 2, 8, 6]) -> [B, 2, 8, 6] {
        x -> Filter(((-1, -2, -1), (0, 0, 0), (1, 2, 1)), border = zeros)
    }
    SobelYCircular(x: [B, 2, 7, 9]) -> [B, 2, 7, 9] {
        x -> Sobel(y, border = circular)
    }
    SobelMagnitude(x: [B, 2, 7, 9]) -> [B, 2, 7, 9] {
        x -> Sobel(magnitude, border = circular)
    }
    LaplacianSym(x: [B, 2, 6, 9]) -> [B, 2, 6, 9] {
        x -> Laplacian(border = symmetric)
    }
    LaplacianReplicate(x: [B, 2, 7, 8]) -> [B, 2, 7, 8] {
        x -> laplacian(border = replicate)
    }
    ShiftDown2Left1(x: [B, 2, 6, 7]) -> [B, 2, 6, 7] {
        x -> Shift(2, -1, border = zeros)
    }
    ImpulseNet(x: [B, 2, 6, 7]) -> [B, 2, 6, 7] {
        x -> Impulse(5)
    }
    Median3Sym(x: [B, 2, 7, 9]) -> [B, 2, 7, 9] {
        x -> Median(3, border = symmetric)
    }
    Median5Zeros(x: [B, 2, 8, 7]) -> [B, 2, 8, 7] {
        x -> median(5, border = zeros)
    }
    Median3Reflect(x: [B, 2, 6, 9]) -> [B, 2, 6, 9] {
        x -> Median(3)
    }
    Median3CircularValid(x: [B, 2, 7, 8]) -> [B, 2, 5, 6] {
        x -> Median(3, border = circular, padding = valid)
    }
    /// High pass: the input minus its low-pass Gaussian.
    HighPass(x: [B, 2, 9, 11]) -> [B, 2, 9, 11] {
        let low = x -> Gaussian(sigma = 2, size = 7);
        x - low
    }
    /// Symbolic sizes: `same` keeps them, `valid` subtracts the kernel.
    AnySize(x: [B, C, H, W]) -> [B, C, H - 4, W - 4] {
        x -> Gaussian(1.0) -> Median(5, padding = valid)
    }
    BigBlur(x: [B, 3, 512, 512]) -> [B, 3, 512, 512] {
        x -> blur: Gaussian(7.5)
    }
    WideOnSmall(x: [B, 3, 64, 64]) -> [B, 3, 64, 64] {
        x -> blur: Gaussian(7.5)
    }
    Small3x3(x: [B, 3, 64, 64]) -> [B, 3, 64, 64] {
        x -> blur: Gaussian(0.25, border = zeros)
    }
    NotSeparable(x: [B, 3, 64, 64]) -> [B, 3, 64, 64] {
        x -> lap: Laplacian -> moved: Shift(1, 1)
    }
}

fn case(name: &str) -> (Tensor, Tensor) {
    let t = tensors("filters.safetensors");
    (
        t[&format!("{name}.input")].clone(),
        t[&format!("{name}.output")].clone(),
    )
}

fn check(name: &str, forward: impl Fn(&Tensor) -> netdsl::Result<Tensor>) {
    let (x, want) = case(name);
    let got = forward(&x).unwrap();
    let err = rel_err(&got, &want);
    assert!(err <= 1e-5, "{name}: relative error {err}");
}

#[test]
fn gaussian_matches_scipy_and_pytorch() {
    let dev = Device::Cpu;
    check("gauss_s1_symmetric", |x| {
        GaussSymmetric::new(&dev)?.forward(x)
    });
    check("gauss_s1_symmetric_wide", |x| {
        GaussSymmetricWide::new(&dev)?.forward(x)
    });
    check("gauss_s2_k7_reflect", |x| GaussK7::new(&dev)?.forward(x));
    check("gauss_s2_k7_reflect", |x| {
        GaussK7Separable::new(&dev)?.forward(x)
    });
    check("gauss_s2_k7_reflect", |x| {
        GaussK7Banded::new(&dev)?.forward(x)
    });
    check("gauss_s2_k7_reflect", |x| {
        GaussK7Direct::new(&dev)?.forward(x)
    });
    check("gauss_s2_k7_reflect", |x| GaussK7Fft::new(&dev)?.forward(x));
    check("gauss_s07_replicate", |x| {
        GaussReplicate::new(&dev)?.forward(x)
    });
    check("gauss_s1_circular_valid", |x| {
        GaussCircularValid::new(&dev)?.forward(x)
    });
}

#[test]
fn mean_sobel_laplacian_shift_match_pytorch_and_scipy() {
    let dev = Device::Cpu;
    check("mean3_zeros", |x| Mean3::new(&dev)?.forward(x));
    check("mean5_reflect", |x| Mean5::new(&dev)?.forward(x));
    check("sobel_x_symmetric", |x| SobelXSym::new(&dev)?.forward(x));
    check("sobel_x_circular", |x| {
        SobelXCircular::new(&dev)?.forward(x)
    });
    check("sobel_y_zeros", |x| SobelYZeros::new(&dev)?.forward(x));
    check("sobel_y_zeros", |x| SobelYWritten::new(&dev)?.forward(x));
    check("laplacian_symmetric", |x| {
        LaplacianSym::new(&dev)?.forward(x)
    });
    check("laplacian_replicate", |x| {
        LaplacianReplicate::new(&dev)?.forward(x)
    });
    check("shift_2_m1_zeros", |x| {
        ShiftDown2Left1::new(&dev)?.forward(x)
    });
}

#[test]
fn median_matches_scipy() {
    let dev = Device::Cpu;
    check("median3_symmetric", |x| Median3Sym::new(&dev)?.forward(x));
    check("median5_zeros", |x| Median5Zeros::new(&dev)?.forward(x));
    check("median3_reflect", |x| Median3Reflect::new(&dev)?.forward(x));
    check("median3_circular_valid", |x| {
        Median3CircularValid::new(&dev)?.forward(x)
    });
}

#[test]
fn sobel_magnitude_is_the_norm_of_the_two_derivatives() {
    let dev = Device::Cpu;
    let (x, gx) = case("sobel_x_circular");
    let gy = SobelYCircular::new(&dev).unwrap().forward(&x).unwrap();
    let want = (gx.sqr().unwrap() + gy.sqr().unwrap())
        .unwrap()
        .sqrt()
        .unwrap();
    let got = SobelMagnitude::new(&dev).unwrap().forward(&x).unwrap();
    assert!(rel_err(&got, &want) <= 1e-5);
}

#[test]
fn impulse_is_the_identity_and_shift_shifts_exactly() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, 2, 6, 7), &dev).unwrap();
    let y = ImpulseNet::new(&dev).unwrap().forward(&x).unwrap();
    let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(v(&y), v(&x));
    // Shift(2, -1): y[i, j] = x[i - 2, j + 1], zeros shifted in.
    let y = ShiftDown2Left1::new(&dev).unwrap().forward(&x).unwrap();
    let moved = y.narrow(2, 2, 4).unwrap().narrow(3, 0, 6).unwrap();
    let source = x.narrow(2, 0, 4).unwrap().narrow(3, 1, 6).unwrap();
    assert_eq!(v(&moved), v(&source));
    assert!(v(&y.narrow(2, 0, 2).unwrap()).iter().all(|a| *a == 0.0));
    assert!(v(&y.narrow(3, 6, 1).unwrap()).iter().all(|a| *a == 0.0));
}

#[test]
fn high_pass_is_the_input_minus_the_low_pass() {
    let dev = Device::Cpu;
    let (x, low) = case("gauss_s2_k7_reflect");
    let got = HighPass::new(&dev).unwrap().forward(&x).unwrap();
    let want = (&x - &low).unwrap();
    assert!(rel_err(&got, &want) <= 1e-5);
}

#[test]
fn symbolic_sizes() {
    let dev = Device::Cpu;
    let net = AnySize::new(&dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (1, 3, 11, 9), &dev).unwrap();
    assert_eq!(net.forward(&x).unwrap().dims(), &[1, 3, 7, 5]);
    let small = Tensor::randn(0f32, 1.0, (1, 3, 4, 9), &dev).unwrap();
    assert!(net.forward(&small).is_err(), "H = 4 leaves no output");
}

#[test]
fn gradients_flow_through_the_linear_filters() {
    let (x, _) = case("gauss_s2_k7_reflect");
    let t = tensors("filters.safetensors");
    let (gout, want) = (
        &t["gauss_s2_k7_reflect.gout"],
        &t["gauss_s2_k7_reflect.grad_input"],
    );
    type Forward<'a> = &'a dyn Fn(&Tensor) -> netdsl::Result<Tensor>;
    let nets: [Forward; 4] = [
        &|x| GaussK7Separable::new(&Device::Cpu)?.forward(x),
        &|x| GaussK7Banded::new(&Device::Cpu)?.forward(x),
        &|x| GaussK7Direct::new(&Device::Cpu)?.forward(x),
        &|x| GaussK7Fft::new(&Device::Cpu)?.forward(x),
    ];
    for forward in nets {
        let xv = Var::from_tensor(&x).unwrap();
        let y = forward(xv.as_tensor()).unwrap();
        let grads = (y * gout).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(xv.as_tensor()).expect("a gradient for the input");
        assert!(rel_err(g, want) <= 1e-5);
    }
}

/// The lowering the cost model picks is listed in `FUSIONS`: a catch for
/// a regression of the choice.
#[test]
fn the_chosen_lowerings_are_listed() {
    // 61 x 61 taps on 512 x 512: the FFT; on 64 x 64 the banded
    // products, even for 3 x 3.
    assert!(
        BigBlur::FUSIONS.contains("`blur` 61 x 61 kernel -> fft"),
        "{}",
        BigBlur::FUSIONS
    );
    // The line the reference quotes.
    assert!(
        BigBlur::FUSIONS.contains(
            "(the convolution theorem: the padded 572 x 572 input times the kernel in a \
             576 x 576 transform), the cost model's choice; est. per 512 x 512 channel: \
             direct 75.3 ms, separable 1.5 ms, banded 4.3 ms, fft 1.0 ms"
        ),
        "{}",
        BigBlur::FUSIONS
    );
    assert!(
        WideOnSmall::FUSIONS.contains("`blur` 61 x 61 kernel -> banded"),
        "{}",
        WideOnSmall::FUSIONS
    );
    assert!(
        Small3x3::FUSIONS.contains("`blur` 3 x 3 kernel -> banded"),
        "{}",
        Small3x3::FUSIONS
    );
    // The Laplacian is not rank one: never separable or banded; on 64 x 64
    // the FFT (46 us measured, 52 estimated) edges out direct (51, 57); a
    // shift is a crop.
    for form in ["separable", "banded"] {
        assert!(
            !NotSeparable::FUSIONS.contains(&format!("`lap` 3 x 3 kernel -> {form}")),
            "{}",
            NotSeparable::FUSIONS
        );
    }
    assert!(
        NotSeparable::FUSIONS.contains("`lap` 3 x 3 kernel -> fft"),
        "{}",
        NotSeparable::FUSIONS
    );
    assert!(
        NotSeparable::FUSIONS.contains("`moved` 3 x 3 kernel -> tap"),
        "{}",
        NotSeparable::FUSIONS
    );
    assert!(GaussK7Banded::FUSIONS.contains("forced by `lowering`"));
    assert!(
        GaussK7Fft::FUSIONS.contains(
            "`blur` 7 x 7 kernel -> fft (the convolution theorem: the padded 15 x 17 input \
             times the kernel in a 16 x 18 transform), forced by `lowering`"
        ),
        "{}",
        GaussK7Fft::FUSIONS
    );
    // No parameters: nothing in the state_dict.
    assert_eq!(BigBlur::PARAMETERS, 0);
}

/// `lowering = fft` on a kernel that is not rank one agrees with the
/// direct form, output and input gradient.
#[test]
fn a_forced_fft_agrees_with_direct() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, 2, 7, 8), &dev).unwrap();
    let gout = Tensor::randn(0f32, 1.0, (2, 2, 5, 6), &dev).unwrap();
    let run = |f: &dyn Fn(&Tensor) -> netdsl::Result<Tensor>| {
        let xv = Var::from_tensor(&x).unwrap();
        let y = f(xv.as_tensor()).unwrap();
        let g = (&y * &gout).unwrap().sum_all().unwrap().backward().unwrap();
        (y, g.get(xv.as_tensor()).unwrap().clone())
    };
    let (want, want_g) = run(&|x| LaplacianValid::new(&dev)?.forward(x));
    let (got, got_g) = run(&|x| LaplacianFftValid::new(&dev)?.forward(x));
    assert!(rel_err(&got, &want) <= 1e-5);
    assert!(rel_err(&got_g, &want_g) <= 1e-5);
    assert!(LaplacianFftValid::FUSIONS.contains("`lap` 3 x 3 kernel -> fft"));
}
