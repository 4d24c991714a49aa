#!/usr/bin/env python3
"""Generate the PyTorch references for the vision transformer written in
`network!` (tests/vit.rs).

What it writes (relative to the repo root):

  tests/fixtures/vit_b_16_manifest.json
      torchvision.models.vit_b_16()'s state_dict as a list of
      {"name", "shape"} in state_dict order (built on the meta device: no
      weights are allocated or downloaded).

  tests/fixtures/vit_small.safetensors
      A width-reduced torchvision VisionTransformer(image_size=32,
      patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
      num_classes=10), weights drawn after torch.manual_seed(0) (the class
      token, position embedding, biases and norms re-drawn from normals so
      none is trivially 0 or 1):
        state.<key>   its state_dict
        input         [2, 3, 32, 32] torch.randn
        output        the model in eval mode on input, [2, 10]

How to run (from the repository root):

    python3 scripts/gen_vit_fixtures.py

Requirements: torch, torchvision and safetensors. CPU only. Deterministic
(fixed seeds, float32, 1 thread).
"""

import json
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import save_checked  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")

torch.set_num_threads(1)


def manifest():
    with torch.device("meta"):
        m = torchvision.models.vit_b_16()
    entries = [{"name": k, "shape": list(v.shape)} for k, v in m.state_dict().items()]
    path = os.path.join(FIXTURES, "vit_b_16_manifest.json")
    with open(path, "w") as f:
        f.write("[\n")
        f.write(",\n".join("  " + json.dumps(e) for e in entries))
        f.write("\n]\n")
    n = sum(v.numel() for v in m.state_dict().values())
    print(f"wrote {path}: {len(entries)} entries, {n} parameters")


def small():
    torch.manual_seed(0)
    m = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=10,
    )
    with torch.no_grad():
        for k, p in m.named_parameters():
            if k.endswith("bias") or "class_token" in k or "pos_embedding" in k or ".ln" in k:
                p.normal_(0.0, 0.5)
                if ".ln" in k and k.endswith("weight"):
                    p.add_(1.0)
            if k.startswith("heads"):
                p.normal_(0.0, 0.3)
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = m(x)
    tensors = {f"state.{k}": v for k, v in m.state_dict().items()}
    tensors["input"] = x
    tensors["output"] = out
    path = os.path.join(FIXTURES, "vit_small.safetensors")
    save_checked(tensors, path, {"generator": "scripts/gen_vit_fixtures.py"})
    print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    manifest()
    small()
