#!/usr/bin/env python3
"""Generate the PyTorch reference fixture for netdsl-runtime's up-sampling
ops (runtime/src/upsample.rs), checked by runtime/tests/upsample_parity.rs.

What it writes (relative to the repo root):

  tests/fixtures/upsample.safetensors
      For every case NAME in CASES below, float32 tensors:
        NAME.input        the input, torch.randn after
                          torch.manual_seed(crc32(NAME))
        NAME.output       the torch op's result on NAME.input
        NAME.gout         a random upstream gradient shaped like NAME.output
        NAME.grad_input   d(sum(NAME.output * NAME.gout)) / d(NAME.input)
      and for the conv_transpose2d cases ("ct_*") also
        NAME.weight       [Cin, Cout / groups, kh, kw] (PyTorch layout)
        NAME.grad_weight  the gradient of the weight
        NAME.bias         [Cout] (only when the case has a bias)
        NAME.grad_bias    the gradient of the bias (idem)
      The file's metadata has one key, "cases": a JSON object mapping every
      NAME to its torch call as text (for reading only; the Rust test mirrors
      each case in a table). One key keeps the file byte-for-byte
      reproducible (safetensors writes metadata keys in hash order).

  The centre-crop cases use torchvision.transforms.functional.center_crop;
  the script also asserts that its offsets are
  top = int(round((H - h) / 2.0)) (Python's round: half to even), the rule
  runtime/src/upsample.rs implements, and that torchvision's v2 functional
  agrees.

How to run (from the repository root):

    python3 scripts/gen_upsample_fixtures.py

Requirements: torch, torchvision and safetensors. CPU only.
Output is deterministic (fixed seeds, float32, 1 thread).
"""

import json
import os
import zlib

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
import torchvision.transforms.v2.functional as TF2
from safetensors.torch import save_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "upsample.safetensors")


def ct(w_shape, bias=True, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    return (
        "conv_transpose2d",
        dict(
            w_shape=w_shape,
            bias=bias,
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            dilation=dilation,
            groups=groups,
        ),
    )


def near(size):
    return ("nearest", dict(size=size))


def bil(size, align):
    return ("bilinear", dict(size=size, align_corners=align))


def shuf(r):
    return ("pixel_shuffle", dict(upscale_factor=r))


def unshuf(r):
    return ("pixel_unshuffle", dict(downscale_factor=r))


def crop(h, w):
    return ("center_crop", dict(output_size=[h, w]))


# name -> (input shape, (kind, kwargs))
CASES = {
    # ---- conv_transpose2d ----------------------------------------------------
    "ct_k3": ((2, 3, 4, 5), ct((3, 2, 3, 3))),
    "ct_k3_s2_p1_op1": ((2, 3, 4, 5), ct((3, 4, 3, 3), stride=2, padding=1, output_padding=1)),
    # The brief's grid point: every option at once, non-square kernel and input.
    "ct_full": (
        (2, 4, 5, 7),
        ct((4, 3, 2, 3), stride=2, padding=1, output_padding=1, dilation=2, groups=2),
    ),
    "ct_full_nobias": (
        (2, 4, 5, 7),
        ct((4, 3, 2, 3), bias=False, stride=2, padding=1, output_padding=1, dilation=2, groups=2),
    ),
    # Different options per axis.
    "ct_per_axis": (
        (1, 2, 4, 3),
        ct((2, 3, 3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(1, 2)),
    ),
    # Padding larger than the dilated kernel extent - 1: the output is cropped.
    "ct_big_pad": ((1, 2, 5, 6), ct((2, 2, 2, 2), stride=3, padding=(3, 2))),
    # Depthwise (groups = Cin = Cout), U-Net's 2x2 up-convolution.
    "ct_depthwise": ((2, 3, 4, 4), ct((3, 1, 3, 3), stride=2, padding=1, groups=3)),
    "ct_unet_up": ((1, 4, 3, 5), ct((4, 2, 2, 2), stride=2)),
    # ---- nearest ---------------------------------------------------------------
    "near_x2": ((2, 3, 4, 5), near((8, 10))),
    "near_5to7": ((1, 2, 5, 5), near((7, 7))),
    "near_7to5": ((1, 2, 7, 7), near((5, 5))),
    "near_mixed": ((2, 2, 5, 7), near((7, 3))),
    "near_x3_identity_w": ((1, 2, 3, 6), near((9, 6))),
    # ---- bilinear -----------------------------------------------------------
    "bil_up_ac": ((2, 2, 4, 5), bil((9, 13), True)),
    "bil_up": ((2, 2, 4, 5), bil((9, 13), False)),
    "bil_down_ac": ((1, 2, 9, 11), bil((4, 5), True)),
    "bil_down": ((1, 2, 9, 11), bil((4, 5), False)),
    "bil_mixed_ac": ((1, 3, 5, 8), bil((7, 3), True)),
    "bil_mixed": ((1, 3, 5, 8), bil((7, 3), False)),
    "bil_x2": ((1, 2, 4, 4), bil((8, 8), False)),
    "bil_to1_ac": ((1, 2, 5, 4), bil((1, 6), True)),
    "bil_to1": ((1, 2, 5, 4), bil((1, 6), False)),
    "bil_from1_ac": ((1, 2, 1, 3), bil((4, 5), True)),
    # ---- pixel shuffle ----------------------------------------------------------
    "shuf_r2": ((2, 8, 3, 4), shuf(2)),
    "shuf_r3": ((1, 18, 2, 3), shuf(3)),
    "unshuf_r2": ((2, 2, 6, 8), unshuf(2)),
    "unshuf_r3": ((1, 2, 6, 9), unshuf(3)),
    # ---- centre crop ---------------------------------------------------------
    # Differences (H, W): (3, 5): (1.5, 2.5) -> (2, 2); (1, 7): (0.5, 3.5) -> (0, 4);
    # (4, 0): even / none; (9, 2): 4.5 -> 4.
    "crop_d3_d5": ((2, 2, 12, 11), crop(9, 6)),
    "crop_d1_d7": ((1, 2, 8, 10), crop(7, 3)),
    "crop_d4_d0": ((1, 2, 10, 5), crop(6, 5)),
    "crop_d9_d2": ((1, 1, 12, 6), crop(3, 4)),
}


def run(kind, kwargs, x, params):
    if kind == "conv_transpose2d":
        kw = {k: v for k, v in kwargs.items() if k not in ("w_shape", "bias")}
        return F.conv_transpose2d(x, params["weight"], params.get("bias"), **kw)
    if kind == "nearest":
        return F.interpolate(x, size=kwargs["size"], mode="nearest")
    if kind == "bilinear":
        return F.interpolate(
            x, size=kwargs["size"], mode="bilinear", align_corners=kwargs["align_corners"]
        )
    if kind == "pixel_shuffle":
        return F.pixel_shuffle(x, **kwargs)
    if kind == "pixel_unshuffle":
        return F.pixel_unshuffle(x, **kwargs)
    if kind == "center_crop":
        h, w = kwargs["output_size"]
        y = TF.center_crop(x, [h, w])
        H, W = x.shape[-2:]
        top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))
        assert torch.equal(y, x[..., top : top + h, left : left + w]), "crop rule"
        assert torch.equal(y, TF2.center_crop(x, [h, w])), "v2 disagrees"
        return y
    raise ValueError(kind)


def main():
    torch.set_num_threads(1)
    tensors = {}
    meta = {}
    for name, (shape, (kind, kwargs)) in CASES.items():
        torch.manual_seed(zlib.crc32(name.encode()))
        x = torch.randn(*shape, dtype=torch.float32).requires_grad_(True)
        params = {}
        if kind == "conv_transpose2d":
            cin, cout_g, kh, kw = kwargs["w_shape"]
            params["weight"] = (0.5 * torch.randn(cin, cout_g, kh, kw)).requires_grad_(True)
            if kwargs["bias"]:
                params["bias"] = torch.randn(cout_g * kwargs["groups"]).requires_grad_(True)
        y = run(kind, kwargs, x, params)
        gout = torch.randn(y.shape, dtype=torch.float32)
        (y * gout).sum().backward()
        tensors[f"{name}.input"] = x.detach().contiguous()
        tensors[f"{name}.output"] = y.detach().contiguous()
        tensors[f"{name}.gout"] = gout.contiguous()
        tensors[f"{name}.grad_input"] = x.grad.detach().contiguous()
        for pname, p in params.items():
            tensors[f"{name}.{pname}"] = p.detach().contiguous()
            tensors[f"{name}.grad_{pname}"] = p.grad.detach().contiguous()
        meta[name] = f"{kind}({kwargs})"
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"cases": json.dumps(meta, sort_keys=True)})
    print(f"wrote {OUT}: {len(CASES)} cases, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
