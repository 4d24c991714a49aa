#!/usr/bin/env python3
"""Generate the PyTorch reference fixture for netdsl-runtime's attention
ops (runtime/src/attention.rs), checked by runtime/tests/attention_parity.rs.

What it writes (relative to the repo root):

  tests/fixtures/attention.safetensors
      For every case NAME in the functions below, float32 tensors (inputs
      drawn with torch.randn after torch.manual_seed(crc32(NAME))):
        NAME.<input>       each input of the op (x; q, k, v; weight, bias; a mask)
        NAME.output        the torch op's result
        NAME.gout          a random upstream gradient shaped like the output
        NAME.grad.<input>  d(sum(output * gout)) / d(input), for each
                           differentiable input
      Cases:
        ln_*     F.layer_norm (one and two normalised dims, affine or not,
                 an input with a large offset)
        rms_*    F.rms_norm
        gelu_*   F.gelu, exact and tanh
        sdpa_*   F.scaled_dot_product_attention (plain, scale, causal with
                 Tq != Tk, boolean mask, additive mask)
        mha_*    nn.MultiheadAttention(8, 2, batch_first=True) in eval mode,
                 self-attention (with and without bias, with a boolean
                 attn_mask) and cross-attention; the module's state_dict
                 under NAME.<key> (in_proj_weight, out_proj.weight, ..)
      The metadata key "cases" maps each NAME to its torch call as text.

How to run (from the repository root):

    python3 scripts/gen_attention_fixtures.py

Requirements: torch and safetensors. CPU only. Deterministic (fixed seeds,
float32, 1 thread).
"""

import json
import os
import sys
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import save_checked  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "attention.safetensors")

torch.set_num_threads(1)
tensors = {}
calls = {}


def seed(name):
    torch.manual_seed(zlib.crc32(name.encode()))


def record(name, call, inputs, fn, grads=True, extra=None):
    """Runs fn(**inputs), stores inputs, output, gout and the gradients of
    the float inputs that require them."""
    calls[name] = call
    leaves = {}
    for k, v in inputs.items():
        if grads and v.dtype == torch.float32:
            v = v.detach().clone().requires_grad_(True)
        leaves[k] = v
    out = fn(**leaves)
    gout = torch.randn_like(out)
    tensors[f"{name}.output"] = out.detach()
    for k, v in leaves.items():
        tensors[f"{name}.{k}"] = v.detach().to(torch.uint8) if v.dtype == torch.bool else v.detach()
    if grads:
        tensors[f"{name}.gout"] = gout
        (out * gout).sum().backward()
        for k, v in leaves.items():
            if v.dtype == torch.float32 and v.grad is not None:
                tensors[f"{name}.grad.{k}"] = v.grad.detach()
    for k, v in (extra or {}).items():
        tensors[f"{name}.{k}"] = v.detach()


def norms():
    for name, shape, nshape, affine, offset in [
        ("ln_last", (2, 5, 8), (8,), True, 0.0),
        ("ln_two_dims", (2, 3, 4, 6), (4, 6), True, 0.0),
        ("ln_no_affine", (3, 7), (7,), False, 0.0),
        ("ln_offset", (2, 4, 16), (16,), True, 50.0),
    ]:
        seed(name)
        inputs = {"x": torch.randn(shape) + offset}
        if affine:
            inputs["weight"] = torch.randn(nshape)
            inputs["bias"] = torch.randn(nshape)
        record(
            name,
            f"F.layer_norm(x, {nshape}, eps=1e-5)",
            inputs,
            lambda x, weight=None, bias=None, n=nshape: F.layer_norm(x, n, weight, bias, eps=1e-5),
        )
    for name, shape, nshape, affine in [
        ("rms_last", (2, 5, 8), (8,), True),
        ("rms_two_dims", (2, 3, 4, 6), (4, 6), False),
    ]:
        seed(name)
        inputs = {"x": torch.randn(shape)}
        if affine:
            inputs["weight"] = torch.randn(nshape)
        record(
            name,
            f"F.rms_norm(x, {nshape}, eps=1e-6)",
            inputs,
            lambda x, weight=None, n=nshape: F.rms_norm(x, n, weight, eps=1e-6),
        )
    for name, approx in [("gelu_exact", "none"), ("gelu_tanh", "tanh")]:
        seed(name)
        record(
            name,
            f"F.gelu(x, approximate={approx!r})",
            {"x": torch.randn(4, 33) * 3},
            lambda x, a=approx: F.gelu(x, approximate=a),
        )


def sdpa():
    shape_q, shape_k, shape_v = (2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6)
    cases = [
        ("sdpa_plain", {}, None),
        ("sdpa_scale", {"scale": 0.3}, None),
        ("sdpa_causal", {"is_causal": True}, None),
        ("sdpa_bool_mask", {}, "bool"),
        ("sdpa_add_mask", {}, "add"),
    ]
    for name, kw, mask in cases:
        seed(name)
        inputs = {
            "q": torch.randn(shape_q),
            "k": torch.randn(shape_k),
            "v": torch.randn(shape_v),
        }
        if mask == "bool":
            m = torch.rand(5, 7) > 0.4
            m[:, 0] = True  # every query attends to at least one key
            inputs["mask"] = m
        elif mask == "add":
            inputs["mask"] = torch.randn(2, 1, 5, 7)
        record(
            name,
            f"F.scaled_dot_product_attention(q, k, v, attn_mask={mask}, **{kw})",
            inputs,
            lambda q, k, v, mask=None, kw=kw: F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, **kw
            ),
        )


def mha():
    for name, bias, cross, mask in [
        ("mha_self", True, False, False),
        ("mha_self_no_bias", False, False, False),
        ("mha_self_mask", True, False, True),
        ("mha_cross", True, True, False),
    ]:
        seed(name)
        m = nn.MultiheadAttention(8, 2, bias=bias, batch_first=True).eval()
        # Non-zero biases, so the test sees them.
        with torch.no_grad():
            for k, p in m.named_parameters():
                if k.endswith("bias"):
                    p.normal_()
        inputs = {"x": torch.randn(2, 5, 8)}
        if cross:
            inputs["memory"] = torch.randn(2, 7, 8)
        if mask:
            am = torch.rand(5, 5) > 0.6
            am.fill_diagonal_(False)  # True blocks; each query keeps itself
            inputs["mask"] = am
        params = dict(m.named_parameters())

        def run(x, memory=None, mask=None, **ps):
            kv = x if memory is None else memory
            out, _ = torch.func.functional_call(
                m, ps, (x, kv, kv), {"attn_mask": mask, "need_weights": False}
            )
            return out

        inputs.update({f"p.{k}": v for k, v in params.items()})
        record(
            name,
            f"nn.MultiheadAttention(8, 2, bias={bias}, batch_first=True)"
            + (", cross" if cross else "")
            + (", attn_mask" if mask else ""),
            inputs,
            lambda **kw: run(
                kw.pop("x"),
                kw.pop("memory", None),
                kw.pop("mask", None),
                **{k[2:]: v for k, v in kw.items()},
            ),
        )


def main():
    norms()
    sdpa()
    mha()
    save_checked(tensors, OUT, {"cases": json.dumps(calls, sort_keys=True)})
    print(f"wrote {OUT}: {len(tensors)} tensors, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
