//! The shapes of one convolution, checked once and shared by every kernel.

use super::Conv2dSpec;

/// Everything a kernel needs to know about one convolution, in elements.
///
/// Layouts are NCHW throughout: `x [b, cin, h, w]`, `w [cout, cin_g, kh, kw]`,
/// `y [b, cout, oh, ow]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geom {
    pub b: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub groups: usize,
    pub cin_g: usize,
    pub cout_g: usize,
    pub sh: usize,
    pub sw: usize,
    /// Top and left padding (bottom and right only shape `oh`, `ow`).
    pub pt: usize,
    pub pl: usize,
    pub dh: usize,
    pub dw: usize,
    pub oh: usize,
    pub ow: usize,
}

/// PyTorch's output size along one axis, `None` when it would be below 1.
pub(super) fn out_len(
    len: usize,
    k: usize,
    s: usize,
    pad: (usize, usize),
    d: usize,
) -> Option<usize> {
    let eff = d * (k - 1) + 1;
    let padded = len + pad.0 + pad.1;
    (padded >= eff).then(|| (padded - eff) / s + 1)
}

impl Geom {
    /// Checks shapes and options; the error says what disagrees.
    pub fn new(
        x: &[usize],
        w: &[usize],
        bias: Option<&[usize]>,
        spec: &Conv2dSpec,
    ) -> Result<Self, String> {
        let (&[b, cin, h, wd], &[cout, cin_g, kh, kw]) = (x, w) else {
            return Err(format!(
                "conv2d: expects x [B, Cin, H, W] and w [Cout, Cin/groups, kh, kw], got {x:?} and {w:?}"
            ));
        };
        let g = spec.groups;
        if g == 0 || cin % g != 0 || cout % g != 0 {
            return Err(format!(
                "conv2d: groups {g} must be positive and divide Cin {cin} and Cout {cout}"
            ));
        }
        if cin_g != cin / g {
            return Err(format!(
                "conv2d: weight {w:?} needs dim 1 = Cin / groups = {cin} / {g} = {}",
                cin / g
            ));
        }
        if let Some(bs) = bias {
            if bs != [cout] {
                return Err(format!("conv2d: bias must be [{cout}], got {bs:?}"));
            }
        }
        let (sh, sw) = spec.stride;
        let (dh, dw) = spec.dilation;
        if sh == 0 || sw == 0 || dh == 0 || dw == 0 || kh == 0 || kw == 0 {
            return Err(format!(
                "conv2d: kernel {kh}x{kw}, stride {:?} and dilation {:?} must be positive",
                spec.stride, spec.dilation
            ));
        }
        let oh = out_len(h, kh, sh, spec.padding.0, dh);
        let ow = out_len(wd, kw, sw, spec.padding.1, dw);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(format!(
                "conv2d: input {h}x{wd} with padding {:?} is smaller than the dilated kernel \
                 {}x{}",
                spec.padding,
                dh * (kh - 1) + 1,
                dw * (kw - 1) + 1
            ));
        };
        Ok(Geom {
            b,
            cin,
            h,
            w: wd,
            cout,
            kh,
            kw,
            groups: g,
            cin_g,
            cout_g: cout / g,
            sh,
            sw,
            pt: spec.padding.0 .0,
            pl: spec.padding.1 .0,
            dh,
            dw,
            oh,
            ow,
        })
    }

    /// Rows of the patch matrix of one group: `cin_g * kh * kw`.
    pub fn k(&self) -> usize {
        self.cin_g * self.kh * self.kw
    }

    /// Output pixels per image and channel.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// Input pixels per image and channel.
    pub fn hw(&self) -> usize {
        self.h * self.w
    }

    /// A 1x1, stride-1, unpadded convolution: a plain matrix multiply on the
    /// input as it lies in memory.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pt == 0
            && self.pl == 0
            && self.oh == self.h
            && self.ow == self.w
    }

    /// One input channel per group (depthwise, channel multiplier
    /// `cout / cin`): a direct loop beats a K = kh * kw matrix multiply.
    pub fn is_depthwise(&self) -> bool {
        self.cin_g == 1 && self.groups == self.cin
    }

    /// For kernel offset `k` along an axis: the range of output positions
    /// whose input position `o * s + k * d - pad` lies inside `0..len`.
    pub fn valid(out: usize, len: usize, s: usize, pad: usize, off: usize) -> (usize, usize) {
        // o * s + off >= pad  <=>  o >= ceil((pad - off) / s)
        let lo = if off >= pad {
            0
        } else {
            (pad - off).div_ceil(s)
        };
        // o * s + off - pad <= len - 1  <=>  o <= (len - 1 + pad - off) / s
        let hi = if len + pad > off {
            ((len - 1 + pad - off) / s + 1).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// Valid output rows for kernel row `ky`.
    pub fn rows(&self, ky: usize) -> (usize, usize) {
        Self::valid(self.oh, self.h, self.sh, self.pt, ky * self.dh)
    }

    /// Valid output columns for kernel column `kx`.
    pub fn cols(&self, kx: usize) -> (usize, usize) {
        Self::valid(self.ow, self.w, self.sw, self.pl, kx * self.dw)
    }
}
