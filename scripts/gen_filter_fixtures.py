#!/usr/bin/env python3
"""Generate the PyTorch and SciPy reference fixture for netdsl's image
filters (runtime/src/filter.rs, macros/compiler/src/ops/filter.rs), checked
by runtime/tests/filter_parity.rs and tests/filters.rs.

What it writes (relative to the repo root):

  tests/fixtures/filters.safetensors
      For every case NAME in CASES below, float32 tensors:
        NAME.input       [1, 2, H, W], torch.randn after
                         torch.manual_seed(crc32(NAME))
        NAME.kernel      [kh, kw], the kernel (linear cases; a median case
                         has a [kh, kw] tensor of ones: its window)
        NAME.col, NAME.row   its 1-D factors, kernel = col ⊗ row (rank-one
                         kernels only)
        NAME.output      the reference result
        NAME.gout, NAME.grad_input   (linear cases) a random upstream
                         gradient and d(sum(output * gout)) / d(input)
      The metadata key "cases" maps every NAME to its border, its padding
      ((top, bottom), (left, right)) and the reference call, as JSON.

  The references: linear filters are F.pad(mode) then F.conv2d with
  groups = C, as PyTorch users write them (zeros: conv2d's own padding);
  the `symmetric` border, which F.pad lacks, and the median come from
  scipy.ndimage (mode "reflect" is netdsl's `symmetric`, "mirror" its
  `reflect`, "nearest" `replicate`, "wrap" `circular`, "constant` `zeros`).
  Gaussian kernels follow SciPy's _gaussian_kernel1d (radius
  floor(4 * sigma + 0.5) unless a size is given), and the Gaussian cases on
  the `symmetric` border are scipy.ndimage.gaussian_filter itself with
  `radius` set.

How to run (from the repository root):

    python3 scripts/gen_filter_fixtures.py

Requirements: torch, scipy, numpy and safetensors. CPU only. Deterministic.
"""

import json
import math
import os
import sys
import zlib

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import save_checked  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "filters.safetensors")

TORCH_MODE = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}
SCIPY_MODE = {
    "zeros": "constant",
    "reflect": "mirror",
    "symmetric": "reflect",
    "replicate": "nearest",
    "circular": "wrap",
}


def gauss1d(sigma, radius):
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    v = np.exp(-0.5 * x * x / (sigma * sigma))
    return v / v.sum()


def mean(k):
    return np.full((k, k), 1.0 / (k * k)), np.full(k, 1.0 / k), np.full(k, 1.0 / k)


def gaussian(sigma, size=None):
    r = int(math.floor(4.0 * sigma + 0.5)) if size is None else (size - 1) // 2
    g = gauss1d(sigma, r)
    return np.outer(g, g), g, g


SOBEL_X = (np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64),
           np.array([1, 2, 1], np.float64), np.array([-1, 0, 1], np.float64))
SOBEL_Y = (SOBEL_X[0].T.copy(), SOBEL_X[2].copy(), SOBEL_X[1].copy())
LAPLACIAN = (np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64), None, None)


def impulse_shift(dy, dx):
    ry, rx = abs(dy), abs(dx)
    k = np.zeros((2 * ry + 1, 2 * rx + 1))
    k[ry - dy, rx - dx] = 1.0
    return k, None, None


# name: (kind, (kernel, col, row) or median size, border, same, H, W, extra)
CASES = [
    ("mean3_zeros", "linear", mean(3), "zeros", True, 7, 9),
    ("mean5_reflect", "linear", mean(5), "reflect", True, 9, 11),
    ("gauss_s1_symmetric", "gaussian_scipy", (1.0, None), "symmetric", True, 12, 13),
    ("gauss_s1_symmetric_wide", "gaussian_scipy", (1.5, None), "symmetric", True, 5, 7),
    ("gauss_s2_k7_reflect", "linear", gaussian(2.0, 7), "reflect", True, 9, 11),
    ("gauss_s07_replicate", "linear", gaussian(0.7), "replicate", True, 8, 7),
    ("gauss_s1_circular_valid", "linear", gaussian(1.0, 5), "circular", False, 9, 8),
    ("sobel_x_circular", "linear", SOBEL_X, "circular", True, 7, 9),
    ("sobel_y_zeros", "linear", SOBEL_Y, "zeros", True, 8, 6),
    ("sobel_x_symmetric", "sobel_scipy", ("x",), "symmetric", True, 7, 9),
    ("laplacian_replicate", "linear", LAPLACIAN, "replicate", True, 7, 8),
    ("laplacian_symmetric", "laplace_scipy", (), "symmetric", True, 6, 9),
    ("shift_2_m1_zeros", "linear", impulse_shift(2, -1), "zeros", True, 6, 7),
    ("custom_3x5_valid", "linear", None, "zeros", False, 7, 9),
    ("custom_rank1_4x2_reflect", "linear", "rank1", "reflect", True, 7, 9),
    ("median3_symmetric", "median", 3, "symmetric", True, 7, 9),
    ("median5_zeros", "median", 5, "zeros", True, 8, 7),
    ("median3_reflect", "median", 3, "reflect", True, 6, 9),
    ("median3_circular_valid", "median", 3, "circular", False, 7, 8),
]


def pads(kh, kw, same):
    if not same:
        return ((0, 0), (0, 0))
    return (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2))


def torch_linear(x, k, border, pad):
    c = x.shape[1]
    w = torch.tensor(k, dtype=torch.float32)[None, None].repeat(c, 1, 1, 1)
    (t, b), (l, r) = pad
    if border == "zeros":
        xp = F.pad(x, (l, r, t, b))
    else:
        xp = F.pad(x, (l, r, t, b), mode=TORCH_MODE[border])
    return F.conv2d(xp, w, groups=c)


def scipy_apply(x, f):
    a = x.detach().numpy().astype(np.float64)
    out = np.stack([np.stack([f(a[n, c]) for c in range(a.shape[1])]) for n in range(a.shape[0])])
    return torch.tensor(out, dtype=torch.float32)


def main():
    torch.set_num_threads(1)
    tensors, meta = {}, {}
    for name, kind, arg, border, same, h, w in CASES:
        torch.manual_seed(zlib.crc32(name.encode()))
        x = torch.randn(1, 2, h, w)
        if kind == "median":
            kh = kw = arg
            pad = pads(kh, kw, same)
            out = scipy_apply(x, lambda a: ndi.median_filter(a, size=arg, mode=SCIPY_MODE[border]))
            if not same:
                r = arg // 2
                out = out[:, :, r:h - r, r:w - r]
            call = f"scipy.ndimage.median_filter(size={arg}, mode={SCIPY_MODE[border]!r})"
            tensors[f"{name}.kernel"] = torch.ones(kh, kw)
        else:
            col = row = None
            if kind == "gaussian_scipy":
                sigma, size = arg
                k, col, row = gaussian(sigma, size)
                radius = (k.shape[0] - 1) // 2
                ref = lambda a: ndi.gaussian_filter(a, sigma, mode=SCIPY_MODE[border], radius=radius)
                call = f"scipy.ndimage.gaussian_filter(sigma={sigma}, radius={radius}, mode={SCIPY_MODE[border]!r})"
            elif kind == "sobel_scipy":
                k, col, row = SOBEL_X
                ref = lambda a: ndi.sobel(a, axis=1, mode=SCIPY_MODE[border])
                call = f"scipy.ndimage.sobel(axis=-1, mode={SCIPY_MODE[border]!r})"
            elif kind == "laplace_scipy":
                k, col, row = LAPLACIAN
                ref = lambda a: ndi.laplace(a, mode=SCIPY_MODE[border])
                call = f"scipy.ndimage.laplace(mode={SCIPY_MODE[border]!r})"
            else:
                ref = None
                if arg is None:
                    g = torch.Generator().manual_seed(7)
                    k = torch.randn(3, 5, generator=g).double().numpy()
                elif arg == "rank1":
                    g = torch.Generator().manual_seed(8)
                    col = torch.randn(4, generator=g).double().numpy()
                    row = torch.randn(2, generator=g).double().numpy()
                    k = np.outer(col, row)
                else:
                    k, col, row = arg
                call = f"F.pad(mode={border!r}) + F.conv2d(groups=C)"
            kh, kw = k.shape
            pad = pads(kh, kw, same)
            xg = x.clone().requires_grad_(True)
            if ref is None:
                out = torch_linear(xg, k, border, pad)
            else:
                out = scipy_apply(x, ref)
                # The gradient of the same filter, through the torch form
                # (the border as an index gather, which F.pad lacks for
                # `symmetric`); its output is checked against SciPy's.
                idx_h = torch.tensor([sym(i - pad[0][0], h) for i in range(h + pad[0][0] + pad[0][1])])
                idx_w = torch.tensor([sym(j - pad[1][0], w) for j in range(w + pad[1][0] + pad[1][1])])
                xp = xg[:, :, idx_h][:, :, :, idx_w]
                cw = torch.tensor(k, dtype=torch.float32)[None, None].repeat(2, 1, 1, 1)
                tout = F.conv2d(xp, cw, groups=2)
                assert (tout - out).abs().max() < 1e-5, name
                out_for_grad = tout
            gout = torch.randn(out.shape)
            (out if ref is None else out_for_grad).mul(gout).sum().backward()
            tensors[f"{name}.gout"] = gout
            tensors[f"{name}.grad_input"] = xg.grad
            tensors[f"{name}.kernel"] = torch.tensor(k, dtype=torch.float32)
            if col is not None:
                tensors[f"{name}.col"] = torch.tensor(col, dtype=torch.float32)
                tensors[f"{name}.row"] = torch.tensor(row, dtype=torch.float32)
        tensors[f"{name}.input"] = x
        tensors[f"{name}.output"] = out.detach()
        meta[name] = {"border": border, "pad": pad, "call": call}
    save_checked(tensors, OUT, {"cases": json.dumps(meta, sort_keys=True)})
    print(f"wrote {OUT}: {len(CASES)} cases, {os.path.getsize(OUT)} bytes")


def sym(i, n):
    """SciPy's "reflect" (netdsl's `symmetric`), periodic past the input."""
    m = i % (2 * n)
    return m if m < n else 2 * n - 1 - m


if __name__ == "__main__":
    main()
