#!/usr/bin/env python3
"""Generate the PyTorch reference fixture for the transformer encoder
written in `network!` (tests/transformer.rs).

What it writes (relative to the repo root):

  tests/fixtures/transformer.safetensors
      For each case NAME (float32; weights drawn after
      torch.manual_seed(crc32(NAME)), biases and norm parameters re-drawn
      from a normal so none is trivially 0 or 1):
        NAME.state.<key>   the case module's state_dict
        NAME.input         [2, 6, 16] torch.randn
        NAME.output        the module in eval mode on NAME.input
      and for the cases with "grad" in their name (dropout 0, train mode):
        NAME.r             a random tensor shaped like the output
        NAME.loss          sum(module(input) * r)
        NAME.grad_input    d loss / d input
        NAME.grad.<key>    d loss / d parameter, for every parameter
      Cases (a Wrap module holds the layer as `layer`, so keys are
      `layer.self_attn.in_proj_weight`, `layer.linear1.weight`, ..):
        post, post_grad    nn.TransformerEncoderLayer(16, 4, 32,
                           batch_first=True) (post-norm, ReLU); dropout 0.1
                           and 0.0
        pre, pre_grad      the same with norm_first=True, activation="gelu"
        stack              nn.TransformerEncoder(post layer, 2) held as
                           `encoder` (keys `encoder.layers.0.self_attn..`)

How to run (from the repository root):

    python3 scripts/gen_transformer_fixtures.py

Requirements: torch and safetensors. CPU only. Deterministic (fixed seeds,
float32, 1 thread).
"""

import os
import sys
import zlib

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import save_checked  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "transformer.safetensors")

torch.set_num_threads(1)
E, HEADS, FF, T, B = 16, 4, 32, 6, 2


def layer(dropout, pre):
    return nn.TransformerEncoderLayer(
        E,
        HEADS,
        FF,
        dropout=dropout,
        activation="gelu" if pre else "relu",
        batch_first=True,
        norm_first=pre,
    )


class Wrap(nn.Module):
    def __init__(self, name, module):
        super().__init__()
        setattr(self, name, module)
        self.name = name

    def forward(self, x):
        return getattr(self, self.name)(x)


def perturb(m):
    with torch.no_grad():
        for k, p in m.named_parameters():
            if k.endswith("bias") or ".norm" in k or k.startswith("norm"):
                p.normal_(0.0, 0.5)
                if "norm" in k and k.endswith("weight"):
                    p.add_(1.0)


def main():
    tensors = {}
    cases = [
        ("post", lambda: Wrap("layer", layer(0.1, False))),
        ("post_grad", lambda: Wrap("layer", layer(0.0, False))),
        ("pre", lambda: Wrap("layer", layer(0.1, True))),
        ("pre_grad", lambda: Wrap("layer", layer(0.0, True))),
        (
            "stack",
            lambda: Wrap(
                "encoder",
                nn.TransformerEncoder(layer(0.1, False), 2, enable_nested_tensor=False),
            ),
        ),
    ]
    for name, build in cases:
        torch.manual_seed(zlib.crc32(name.encode()))
        m = build()
        perturb(m)
        x = torch.randn(B, T, E)
        for k, v in m.state_dict().items():
            tensors[f"{name}.state.{k}"] = v
        tensors[f"{name}.input"] = x
        m.eval()
        with torch.no_grad():
            tensors[f"{name}.output"] = m(x)
        if "grad" in name:
            m.train()
            xi = x.clone().requires_grad_(True)
            out = m(xi)
            r = torch.randn_like(out)
            loss = (out * r).sum()
            loss.backward()
            tensors[f"{name}.r"] = r
            tensors[f"{name}.loss"] = loss.detach()
            tensors[f"{name}.grad_input"] = xi.grad
            for k, p in m.named_parameters():
                tensors[f"{name}.grad.{k}"] = p.grad
    save_checked(tensors, OUT, {"generator": "scripts/gen_transformer_fixtures.py"})
    print(f"wrote {OUT}: {len(tensors)} tensors, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
