#!/usr/bin/env python3
"""Generate the PyTorch reference fixture for netdsl-runtime's convolution
(runtime/src/conv/), checked by runtime/tests/conv_parity.rs.

What it writes (relative to the repo root):

  tests/fixtures/conv_grad.safetensors
      For every case NAME in CASES below:
        NAME.spec  float32 [11]: sh, sw, pad_top, pad_bottom, pad_left,
                   pad_right, dh, dw, groups, activation id, activation
                   parameter (ids: 0 none, 1 relu, 2 leaky_relu(param),
                   3 gelu (exact), 4 silu, 5 sigmoid)
        NAME.x, NAME.w, NAME.b   the input [B, Cin, H, W], weight
                   [Cout, Cin/groups, kh, kw] and bias [Cout] (randn, seeded
                   by crc32(NAME))
        NAME.y     act(conv2d(pad(x), w, b, stride, dilation, groups))
        NAME.gy    a random upstream gradient shaped like NAME.y
        NAME.dx, NAME.dw, NAME.db   d(sum(y * gy)) / d(x, w, b)
      Everything is computed in float64 and stored as float32, so the
      reference carries no rounding of its own. The Rust test reads the
      options from NAME.spec and checks the list of names.

How to run (from the repository root):

    python3 scripts/gen_conv_fixtures.py

Requirements: torch and safetensors. CPU only; deterministic.
"""

import os
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "conv_grad.safetensors")

ACTS = {"none": 0, "relu": 1, "leaky": 2, "gelu": 3, "silu": 4, "sigmoid": 5}


def case(name, x, w, stride=(1, 1), pad=((0, 0), (0, 0)), dil=(1, 1), groups=1,
         act="none", param=0.0):
    return dict(name=name, x=x, w=w, stride=stride, pad=pad, dil=dil,
                groups=groups, act=act, param=param)


# (name, x shape, w shape, options). Small shapes keep the file small.
CASES = [
    case("odd_3x3", (2, 3, 7, 9), (4, 3, 3, 3), pad=((1, 1), (1, 1))),
    case("stride2_parity", (2, 3, 7, 8), (4, 3, 3, 3), stride=(2, 2), pad=((1, 1), (1, 1))),
    case("stride3", (1, 2, 11, 10), (3, 2, 3, 3), stride=(3, 3), pad=((1, 1), (1, 1))),
    case("stride_per_axis", (2, 2, 9, 8), (3, 2, 3, 2), stride=(2, 1), pad=((0, 1), (1, 0))),
    case("dilation2", (1, 3, 10, 9), (2, 3, 3, 3), dil=(2, 2), pad=((2, 2), (2, 2))),
    case("dilation_per_axis", (2, 2, 9, 10), (3, 2, 3, 3), dil=(1, 2), stride=(1, 2)),
    case("groups2", (2, 4, 6, 7), (6, 2, 3, 3), groups=2, pad=((1, 1), (1, 1))),
    case("depthwise", (2, 4, 8, 7), (4, 1, 3, 3), groups=4, pad=((1, 1), (1, 1))),
    case("depthwise_mult2_s2", (2, 3, 9, 8), (6, 1, 3, 3), groups=3, stride=(2, 2),
         pad=((1, 1), (1, 1))),
    case("depthwise_dil_asym", (1, 2, 9, 9), (2, 1, 3, 3), groups=2, dil=(2, 1),
         pad=((3, 0), (0, 2))),
    case("pointwise", (2, 5, 6, 7), (4, 5, 1, 1)),
    case("pointwise_groups", (2, 4, 5, 5), (6, 2, 1, 1), groups=2),
    case("pointwise_stride2", (1, 4, 7, 6), (3, 4, 1, 1), stride=(2, 2)),
    case("k7_s2", (1, 3, 15, 14), (4, 3, 7, 7), stride=(2, 2), pad=((3, 3), (3, 3))),
    case("k11_s4", (1, 2, 23, 22), (3, 2, 11, 11), stride=(4, 4), pad=((2, 2), (2, 2))),
    case("asym_pad", (2, 2, 6, 7), (3, 2, 3, 3), pad=((0, 2), (2, 1))),
    case("rect_kernel", (1, 3, 8, 9), (2, 3, 2, 5), pad=((1, 0), (2, 2))),
    case("bias_relu", (2, 3, 7, 7), (4, 3, 3, 3), pad=((1, 1), (1, 1)), act="relu"),
    case("bias_leaky", (2, 3, 7, 6), (4, 3, 3, 3), stride=(2, 1), pad=((1, 1), (1, 1)),
         act="leaky", param=0.1),
    case("bias_leaky_neg", (1, 3, 6, 6), (4, 3, 3, 3), pad=((1, 1), (1, 1)),
         act="leaky", param=-0.5),
    case("bias_gelu", (2, 3, 7, 7), (4, 3, 3, 3), pad=((1, 1), (1, 1)), act="gelu"),
    case("bias_silu", (2, 2, 7, 8), (4, 2, 3, 3), stride=(2, 2), pad=((1, 1), (1, 1)),
         act="silu"),
    case("bias_sigmoid", (2, 3, 6, 7), (4, 3, 3, 3), groups=1, pad=((0, 1), (1, 0)),
         act="sigmoid"),
    case("depthwise_gelu", (2, 4, 7, 7), (4, 1, 3, 3), groups=4, pad=((1, 1), (1, 1)),
         act="gelu"),
    case("pointwise_silu", (2, 6, 5, 6), (4, 6, 1, 1), act="silu"),
    case("groups2_relu_s2", (2, 4, 9, 8), (4, 2, 3, 3), groups=2, stride=(2, 2),
         pad=((1, 1), (1, 1)), act="relu"),
    # The backward's paths: padding beyond the kernel's reach (no transposed
    # convolution for the input gradient), bottom padding beyond it (the
    # transposed one's implicit bottom), more than 256 patch rows (several
    # row blocks). Larger sizes are compared with a direct sum in the
    # runtime's unit tests (conv/backward.rs), not stored here.
    case("pad_beyond_reach", (1, 3, 5, 6), (2, 3, 1, 1), pad=((1, 1), (1, 1))),
    case("bottom_pad_beyond", (2, 3, 6, 7), (4, 3, 3, 3), pad=((0, 3), (2, 0))),
    case("wide_stride2", (1, 30, 7, 6), (4, 30, 3, 3), stride=(2, 2), pad=((1, 1), (1, 1))),
]


def run(c):
    g = torch.Generator().manual_seed(zlib.crc32(c["name"].encode()))
    x = torch.randn(c["x"], generator=g, dtype=torch.float64)
    w = torch.randn(c["w"], generator=g, dtype=torch.float64) * 0.5
    b = torch.randn(c["w"][0], generator=g, dtype=torch.float64)
    # round the inputs to float32 first: the reference is then exact for them
    x, w, b = (t.float().double().requires_grad_() for t in (x, w, b))
    (pt, pb), (pl, pr) = c["pad"]
    z = F.conv2d(F.pad(x, (pl, pr, pt, pb)), w, b, stride=c["stride"],
                 dilation=c["dil"], groups=c["groups"])
    act = c["act"]
    y = {
        "none": lambda z: z,
        "relu": F.relu,
        "leaky": lambda z: F.leaky_relu(z, c["param"]),
        "gelu": F.gelu,
        "silu": F.silu,
        "sigmoid": torch.sigmoid,
    }[act](z)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64).float().double()
    dx, dw, db = torch.autograd.grad((y * gy).sum(), (x, w, b))
    spec = [*c["stride"], pt, pb, pl, pr, *c["dil"], c["groups"], ACTS[act], c["param"]]
    n = c["name"]
    out = {f"{n}.spec": torch.tensor(spec, dtype=torch.float64)}
    for k, v in dict(x=x, w=w, b=b, y=y, gy=gy, dx=dx, dw=dw, db=db).items():
        out[f"{n}.{k}"] = v
    return {k: v.detach().float().contiguous() for k, v in out.items()}


def main():
    tensors = {}
    for c in CASES:
        tensors.update(run(c))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT)
    print(f"wrote {len(CASES)} cases to {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
