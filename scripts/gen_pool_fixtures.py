#!/usr/bin/env python3
"""Generate the PyTorch reference fixture for netdsl-runtime's pooling
(runtime/src/pool.rs), checked by runtime/tests/pool_parity.rs.

What it writes (relative to the repo root):

  tests/fixtures/pool.safetensors
      For every case NAME in CASES below, four float32 tensors:
        NAME.input   the input, torch.randn after torch.manual_seed(crc32(NAME))
                     (negated absolute values for the "neg" cases, so every
                     element is negative)
        NAME.output  the torch functional's result on NAME.input
        NAME.gout    a random upstream gradient shaped like NAME.output
        NAME.grad    d(sum(NAME.output * NAME.gout)) / d(NAME.input)
      The file's metadata has one key, "cases": a JSON object mapping every
      NAME to its torch call as text (for reading only; the Rust test mirrors
      each case in a table). One key keeps the file byte-for-byte
      reproducible (safetensors writes metadata keys in hash order).

How to run (from the repository root):

    python3 scripts/gen_pool_fixtures.py

Requirements: torch and safetensors (pip install torch safetensors). CPU only.
Output is deterministic (fixed seeds, float32, 1 thread).
"""

import json
import os
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "pool.safetensors")

A = (2, 2, 9, 11)
B = (1, 2, 5, 5)


def mx(k, s, p=0, d=1, ceil=False):
    return ("max", dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil))


def av(k, s, p=0, ceil=False, incl=True):
    return ("avg", dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=incl))


def aavg(out):
    return ("adaptive_avg", dict(output_size=out))


def amax(out):
    return ("adaptive_max", dict(output_size=out))


# name -> (input shape, negative-only?, (kind, kwargs))
CASES = {
    # ---- max ---------------------------------------------------------------
    "max_k2_s2": (A, False, mx(2, 2)),
    "max_k3_s2_p1": (A, False, mx(3, 2, 1)),
    "max_k3_s2_p1_ceil": (A, False, mx(3, 2, 1, ceil=True)),
    "max_k2_s2_ceil": (A, False, mx(2, 2, ceil=True)),
    "max_k23_s21_p11": (A, False, mx((2, 3), (2, 1), (1, 1))),
    "max_k23_s12_p01_ceil": (A, False, mx((2, 3), (1, 2), (0, 1), ceil=True)),
    "max_k3_s1_p1_d2": (A, False, mx(3, 1, 1, d=2)),
    "max_k3_s2_p1_d23_ceil": (A, False, mx(3, 2, 1, d=(2, 3), ceil=True)),
    "max_ceil_corner": (B, False, mx(2, 2, 1, ceil=True)),
    "max_k3_s2_ceil_tiny": ((1, 2, 2, 2), False, mx(3, 2, ceil=True)),
    "max_neg_k3_s2_p1_ceil": (A, True, mx(3, 2, 1, ceil=True)),
    "max_neg_k2_s2_p1_d2": (B, True, mx(2, 2, 1, d=2)),
    # ---- avg ---------------------------------------------------------------
    "avg_k3_s2": (A, False, av(3, 2)),
    "avg_k3_s2_p1": (A, False, av(3, 2, 1)),
    "avg_k3_s2_p1_excl": (A, False, av(3, 2, 1, incl=False)),
    "avg_k3_s2_p1_ceil": (A, False, av(3, 2, 1, ceil=True)),
    "avg_k3_s2_p1_ceil_excl": (A, False, av(3, 2, 1, ceil=True, incl=False)),
    "avg_k2_s2_ceil": (A, False, av(2, 2, ceil=True)),
    "avg_k23_s21_p11": (A, False, av((2, 3), (2, 1), (1, 1))),
    "avg_k23_s21_p11_excl": (A, False, av((2, 3), (2, 1), (1, 1), incl=False)),
    "avg_ceil_corner": (B, False, av(2, 2, 1, ceil=True)),
    "avg_ceil_corner_excl": (B, False, av(2, 2, 1, ceil=True, incl=False)),
    "avg_neg_k3_s2_p1": (B, True, av(3, 2, 1)),
    # ---- adaptive ----------------------------------------------------------
    "aavg_smaller_div": (A, False, aavg((3, 1))),
    "aavg_global": (A, False, aavg((1, 1))),
    "aavg_equal": (A, False, aavg((9, 11))),
    "aavg_nondiv": (A, False, aavg((4, 5))),
    "aavg_mixed": (A, False, aavg((12, 4))),
    "aavg_5to6": (B, False, aavg((6, 6))),
    "aavg_6to7": ((1, 2, 6, 6), False, aavg((7, 7))),
    "aavg_13to6": ((1, 2, 13, 13), False, aavg((6, 6))),
    "amax_smaller_div": (A, False, amax((3, 1))),
    "amax_equal": (A, False, amax((9, 11))),
    "amax_nondiv": (A, False, amax((4, 5))),
    "amax_mixed": (A, False, amax((12, 4))),
    "amax_5to6": (B, False, amax((6, 6))),
    "amax_6to7": ((1, 2, 6, 6), False, amax((7, 7))),
    "amax_13to6": ((1, 2, 13, 13), False, amax((6, 6))),
    "amax_neg_nondiv": (B, True, amax((3, 2))),
}

FNS = {
    "max": F.max_pool2d,
    "avg": F.avg_pool2d,
    "adaptive_avg": F.adaptive_avg_pool2d,
    "adaptive_max": F.adaptive_max_pool2d,
}


def main():
    torch.set_num_threads(1)
    tensors = {}
    meta = {}
    for name, (shape, neg, (kind, kwargs)) in CASES.items():
        torch.manual_seed(zlib.crc32(name.encode()))
        x = torch.randn(*shape, dtype=torch.float32)
        if neg:
            x = -(x.abs() + 0.1)
        x.requires_grad_(True)
        y = FNS[kind](x, **kwargs)
        gout = torch.randn(y.shape, dtype=torch.float32)
        (y * gout).sum().backward()
        tensors[f"{name}.input"] = x.detach().contiguous()
        tensors[f"{name}.output"] = y.detach().contiguous()
        tensors[f"{name}.gout"] = gout.contiguous()
        tensors[f"{name}.grad"] = x.grad.detach().contiguous()
        meta[name] = f"F.{FNS[kind].__name__}({kwargs})"
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"cases": json.dumps(meta, sort_keys=True)})
    print(f"wrote {OUT}: {len(CASES)} cases, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
