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

  tests/fixtures/vit_tiny_224.safetensors
      The state_dict alone (what `examples/vit.rs --weights` reads) of a
      randomly initialised torchvision VisionTransformer(image_size=224,
      patch_size=16, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
      num_classes=10), drawn after torch.manual_seed(1) and re-drawn as
      above. Real ImageNet weights cannot be downloaded here.

  tests/fixtures/vit_tiny_io.safetensors
      out_224   that model in eval mode on formula_input([2, 3, 224, 224])
      out_288   torchvision's VisionTransformer(image_size=288, ..) loaded
                with interpolate_embeddings(288, 16, state_dict) (the 14x14
                grid of position embeddings resampled bicubically to
                18x18), in eval mode on formula_input([2, 3, 288, 288])
      out_160   the same at image_size=160 (a 10x10 grid)
      pos_288   the interpolated encoder.pos_embedding, [1, 325, 8]
      (The inputs are not stored: tests/common's formula_input rebuilds
      them.)

  tests/fixtures/vit_timm_small.safetensors
      timm 1.0's VisionTransformer(img_size=32, patch_size=8, embed_dim=16,
      depth=2, num_heads=2, mlp_ratio=2, num_classes=10,
      drop_path_rate=0.1) (seed 4, re-drawn as above), the timm layout
      (`blocks.N.attn.qkv`, `cls_token`, `pos_embed`, DropPath between):
        state.<key>   its state_dict
        input         [2, 3, 32, 32] torch.randn
        output        its eval output, [2, 10]
      Written only when timm is installed (`pip install timm`).

  tests/fixtures/mha_layouts.safetensors
      One nn.MultiheadAttention(8, 2, batch_first=True) (seed 2, biases
      re-drawn) under three parameter layouts, and its eval output:
        torch.<key>  its state_dict (in_proj_weight, out_proj.weight, ..)
        timm.<key>   the same tensors as timm's Attention names them
                     (qkv.weight = in_proj_weight, proj.weight = out_proj.weight)
        hf.<key>     as Hugging Face's separate projections (CLIP, BART,
                     Whisper, OPT: q_proj, k_proj, v_proj, out_proj;
                     q_proj.weight = in_proj_weight[:8], ..)
        input        [2, 5, 8] torch.randn
        output       [2, 5, 8]
      The script checks the renaming: timm's Attention.forward and
      Hugging Face's CLIPAttention.forward, written out here, give the
      same output from the renamed tensors.

How to run (from the repository root):

    python3 scripts/gen_vit_fixtures.py

With `--full DIR` it writes instead, not committed (346 MB), for the
ignored test `full_vit_b_16_equals_torchvision` in tests/vit.rs:

  DIR/vit_b_16.safetensors     a randomly initialised torchvision vit_b_16's
                               state_dict (seed 3; the zero-initialised head
                               and the biases re-drawn as above)
  DIR/vit_b_16_io.safetensors  out: its eval output on
                               formula_input([1, 3, 224, 224]), [1, 1000]

    python3 scripts/gen_vit_fixtures.py --full /tmp/vit
    NETDSL_VIT_B_16_DIR=/tmp/vit cargo test --workspace --test vit -- --ignored

Requirements: torch, torchvision and safetensors. CPU only. Deterministic
(fixed seeds, float32, 1 thread).
"""

import json
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import formula_input, save_checked  # noqa: E402
from torchvision.models.vision_transformer import interpolate_embeddings  # noqa: E402

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


def redraw(m):
    """Biases, tokens, embeddings, norms and the head re-drawn from normals,
    so that none is trivially 0 or 1."""
    with torch.no_grad():
        for k, p in m.named_parameters():
            if k.endswith("bias") or "class_token" in k or "pos_embedding" in k or ".ln" in k:
                p.normal_(0.0, 0.5)
                if ".ln" in k and k.endswith("weight"):
                    p.add_(1.0)
            if k.startswith("heads"):
                p.normal_(0.0, 0.3)


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
    redraw(m)
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


def tiny(image_size):
    return torchvision.models.VisionTransformer(
        image_size=image_size,
        patch_size=16,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
        num_classes=10,
    )


def tiny_224_and_interpolated():
    torch.manual_seed(1)
    m = tiny(224)
    redraw(m)
    m.eval()
    state = {k: v.detach().clone() for k, v in m.state_dict().items()}
    path = os.path.join(FIXTURES, "vit_tiny_224.safetensors")
    save_checked(state, path, {"generator": "scripts/gen_vit_fixtures.py"})
    print(f"wrote {path}: {len(state)} tensors, {os.path.getsize(path)} bytes")
    io = {}
    with torch.no_grad():
        io["out_224"] = m(formula_input([2, 3, 224, 224]))
        for size in (288, 160):
            new_state = interpolate_embeddings(size, 16, dict(state))
            m2 = tiny(size)
            m2.load_state_dict(new_state)
            m2.eval()
            io[f"out_{size}"] = m2(formula_input([2, 3, size, size]))
            if size == 288:
                io["pos_288"] = new_state["encoder.pos_embedding"]
    path = os.path.join(FIXTURES, "vit_tiny_io.safetensors")
    save_checked(io, path, {"generator": "scripts/gen_vit_fixtures.py"})
    print(f"wrote {path}: {len(io)} tensors, {os.path.getsize(path)} bytes")


def timm_small():
    try:
        import timm
    except ImportError:
        print("timm is not installed: vit_timm_small.safetensors left as it is")
        return
    torch.manual_seed(4)
    m = timm.models.vision_transformer.VisionTransformer(
        img_size=32,
        patch_size=8,
        embed_dim=16,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        num_classes=10,
        drop_path_rate=0.1,
    )
    with torch.no_grad():
        for k, p in m.named_parameters():
            if k.endswith("bias") or k in ("cls_token", "pos_embed") or "norm" in k:
                p.normal_(0.0, 0.5)
                if "norm" in k and k.endswith("weight"):
                    p.add_(1.0)
            if k.startswith("head"):
                p.normal_(0.0, 0.3)
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = m(x)
    tensors = {f"state.{k}": v for k, v in m.state_dict().items()}
    tensors["input"] = x
    tensors["output"] = out
    path = os.path.join(FIXTURES, "vit_timm_small.safetensors")
    save_checked(tensors, path, {"generator": "scripts/gen_vit_fixtures.py", "timm": timm.__version__})
    print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


def mha_layouts():
    torch.manual_seed(2)
    m = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        for k, p in m.named_parameters():
            if k.endswith("bias"):
                p.normal_()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        out, _ = m(x, x, x, need_weights=False)
    sd = {k: v.detach().clone() for k, v in m.state_dict().items()}
    e, heads = 8, 2
    timm = {
        "qkv.weight": sd["in_proj_weight"],
        "qkv.bias": sd["in_proj_bias"],
        "proj.weight": sd["out_proj.weight"],
        "proj.bias": sd["out_proj.bias"],
    }
    hf = {"out_proj.weight": sd["out_proj.weight"], "out_proj.bias": sd["out_proj.bias"]}
    for i, n in enumerate(["q_proj", "k_proj", "v_proj"]):
        hf[f"{n}.weight"] = sd["in_proj_weight"][i * e:(i + 1) * e].clone()
        hf[f"{n}.bias"] = sd["in_proj_bias"][i * e:(i + 1) * e].clone()
    F = torch.nn.functional
    with torch.no_grad():
        # timm's Attention.forward.
        b, n, c = x.shape
        qkv = F.linear(x, timm["qkv.weight"], timm["qkv.bias"])
        q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        y = F.linear(y, timm["proj.weight"], timm["proj.bias"])
        assert torch.allclose(y, out, atol=1e-6), "timm layout"
        # Hugging Face's CLIPAttention.forward.
        hd = c // heads
        split = lambda t: t.view(b, n, heads, hd).transpose(1, 2)
        q = split(F.linear(x, hf["q_proj.weight"], hf["q_proj.bias"]) * hd ** -0.5)
        k = split(F.linear(x, hf["k_proj.weight"], hf["k_proj.bias"]))
        v = split(F.linear(x, hf["v_proj.weight"], hf["v_proj.bias"]))
        w = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        y = (w @ v).transpose(1, 2).reshape(b, n, c)
        y = F.linear(y, hf["out_proj.weight"], hf["out_proj.bias"])
        assert torch.allclose(y, out, atol=1e-6), "hf layout"
    tensors = {"input": x, "output": out}
    for prefix, d in (("torch", sd), ("timm", timm), ("hf", hf)):
        tensors.update({f"{prefix}.{k}": v for k, v in d.items()})
    path = os.path.join(FIXTURES, "mha_layouts.safetensors")
    save_checked(tensors, path, {"generator": "scripts/gen_vit_fixtures.py"})
    print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


def full(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(3)
    m = torchvision.models.vit_b_16()
    redraw(m)
    m.eval()
    state = {k: v.detach().contiguous() for k, v in m.state_dict().items()}
    from safetensors.torch import save_file

    save_file(state, os.path.join(out_dir, "vit_b_16.safetensors"))
    with torch.no_grad():
        out = m(formula_input([1, 3, 224, 224]))
    save_file({"out": out.contiguous()}, os.path.join(out_dir, "vit_b_16_io.safetensors"))
    print(f"wrote {out_dir}/vit_b_16.safetensors and vit_b_16_io.safetensors")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--full":
        full(sys.argv[2])
        sys.exit(0)
    manifest()
    small()
    tiny_224_and_interpolated()
    mha_layouts()
    timm_small()
