#!/usr/bin/env python3
"""Generate the CNN reference fixtures (AlexNet/VGG-style nets, BatchNorm,
activations) used by netdsl's Rust tests.

Deterministic input formula (used for the AlexNet/VGG outputs; it is NOT
stored in the files, the Rust side recomputes it):

    For an input of shape [N,C,H,W], the element with flat row-major index i
    (i = ((n*C + c)*H + h)*W + w, starting at 0) is

        x[i] = float32(sin(0.37 * i + 0.1))

    computed in float64 (i converted exactly to f64, one multiply then one
    add, no fused multiply-add, libm sin), then rounded to float32. In Rust:

        ((0.37_f64 * i as f64 + 0.1).sin()) as f32

    First values (as f32): x[0] = 0.09983341, x[1] = 0.45288628, x[2] = 0.74464309.

What it writes (all under tests/fixtures/, relative to the repo root):

  torchvision_manifests.json (alexnet, vgg16, vgg16_bn, resnet18, resnet34,
  mobilenet_v2: names, shapes, dtypes of the state_dict; the zoo's test)
      {"alexnet": [...], "vgg16": [...], "resnet18": [...], "resnet34": [...]}: for each
      torchvision.models.<name>(weights=None), its state_dict in order as
      {"name": key, "shape": [...], "dtype": "F32" | "I64"}. resnet18 has
      BatchNorm buffers, incl. num_batches_tracked (I64, shape []).

  alexnet_small.safetensors
      torchvision AlexNet layout, channels / 16, classifier 576->128->128->10:
        features = Conv2d(3,4,11,s4,p2) ReLU MaxPool(3,2) Conv2d(4,12,5,p2)
                   ReLU MaxPool(3,2) Conv2d(12,24,3,p1) ReLU Conv2d(24,16,3,p1)
                   ReLU Conv2d(16,16,3,p1) ReLU MaxPool(3,2)
        avgpool  = AdaptiveAvgPool2d((6,6))
        classifier = Dropout Linear(576,128) ReLU Dropout Linear(128,128)
                     ReLU Linear(128,10)
      forward: features -> avgpool -> flatten(1) -> classifier.
      torch.manual_seed(0), default PyTorch init, eval(). Keys: the state_dict
      (features.{0,3,6,8,10}.{weight,bias}, classifier.{1,4,6}.{weight,bias})
      plus
        output_224   [1,10]       model(formula input [1,3,224,224])
        output_193   [1,10]       model(formula input [1,3,193,193])
        features_193 [1,16,5,5]   features(formula input [1,3,193,193]);
                                  5x5 < 6x6, so the adaptive pool upsamples.

  vgg16_small.safetensors
      torchvision VGG-16 layout (cfg D), channels / 16:
        features = [4,4,M,8,8,M,16,16,16,M,32,32,32,M,32,32,32,M]
                   (Conv2d 3x3 p1 + ReLU per number, MaxPool2d(2,2) per M)
        avgpool  = AdaptiveAvgPool2d((7,7))
        classifier = Linear(1568,128) ReLU Dropout Linear(128,128) ReLU
                     Dropout Linear(128,10)
      Seed 0, default PyTorch init (not torchvision's VGG init), eval(). Keys:
      the state_dict (features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.*,
      classifier.{0,3,6}.*) plus output_224 [1,10] and output_193 [1,10]
      (at 193 the features end at 6x6; the adaptive pool upsamples to 7x7).

  bn_cnn.safetensors
      Eval-mode net with non-trivial BatchNorm state:
        conv1 = Conv2d(3,8,3,p1,bias=False); bn1 = BatchNorm2d(8); relu;
        max_pool2d(2); conv2 = Conv2d(8,16,3,p1); bn2 = BatchNorm2d(16,
        eps=1e-3); relu; adaptive_avg_pool2d(1); flatten(1);
        fc = Linear(16,10); bn3 = BatchNorm1d(10)
      Seed 0, model built, then for bn1, bn2, bn3 in that order:
        running_mean = randn*0.5, running_var = rand+0.5,
        weight = 1+randn*0.2, bias = randn*0.2, num_batches_tracked = 7.
      Keys: the state_dict (float32 except *.num_batches_tracked: int64,
      shape []) plus input [2,3,16,16] (randn, drawn next) and output [2,10].

  activations.safetensors
      Seed 0; input [2,3,5,7] = randn*3, and, all [2,3,5,7]:
        leaky_relu_0.1 (LeakyReLU(0.1)), leaky_relu_default (slope 0.01),
        gelu (exact, erf), gelu_tanh (approximate='tanh'), silu, relu6,
        hardswish, dropout_eval (Dropout(0.3) in eval mode = identity).

How to run (from the repository root):

    python3 scripts/gen_cnn_fixtures.py

Requirements: torch, torchvision, safetensors
(pip install torch torchvision safetensors). CPU-only is enough. Output is
deterministic (float32, 1 thread, metadata keys sorted): reruns are
byte-identical.
"""

import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from fixture_common import formula_input, save_checked

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
GENERATOR = "scripts/gen_cnn_fixtures.py"
FORMULA = ("x[i] = float32(sin(0.37*i + 0.1)) computed in float64, "
           "i = flat row-major index")

DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def meta(**extra):
    m = {"generator": GENERATOR, "torch": torch.__version__}
    m.update(extra)
    return m


def save(tensors, name, **extra):
    path = os.path.join(FIXTURES, name)
    save_checked(tensors, path, meta(**extra))
    return path


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def manifest(model):
    return [{"name": k, "shape": list(v.shape), "dtype": DTYPES[v.dtype]}
            for k, v in model.state_dict().items()]


# ---------------------------------------------------------------- manifests

def gen_manifests():
    out = {}
    for name in ("alexnet", "vgg16", "vgg16_bn", "resnet18", "resnet34", "mobilenet_v2"):
        model = getattr(torchvision.models, name)(weights=None)
        out[name] = manifest(model)
    path = os.path.join(FIXTURES, "torchvision_manifests.json")
    lines = ["{"]
    for j, (name, entries) in enumerate(out.items()):
        lines.append(f"  {json.dumps(name)}: [")
        for i, e in enumerate(entries):
            comma = "," if i + 1 < len(entries) else ""
            lines.append("    " + json.dumps(e) + comma)
        lines.append("  ]" + ("," if j + 1 < len(out) else ""))
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(path) as f:
        assert json.load(f) == out
    return path, out


# ---------------------------------------------------------------- AlexNet

class AlexNetSmall(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(4, 12, 5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(12, 24, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(24, 16, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(16 * 6 * 6, 128), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(128, 128), nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# ---------------------------------------------------------------- VGG-16

VGG16_SMALL_CFG = [4, 4, "M", 8, 8, "M", 16, 16, 16, "M",
                   32, 32, 32, "M", 32, 32, 32, "M"]


class VGG16Small(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        layers, c = [], 3
        for v in VGG16_SMALL_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(32 * 7 * 7, 128), nn.ReLU(True), nn.Dropout(),
            nn.Linear(128, 128), nn.ReLU(True), nn.Dropout(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def check_layout(model, tv_manifest):
    """Same keys, in the same order, as the torchvision model."""
    ours = [k for k in model.state_dict()]
    theirs = [e["name"] for e in tv_manifest]
    assert ours == theirs, (ours, theirs)
    for k, e in zip(ours, tv_manifest):
        assert model.state_dict()[k].dim() == len(e["shape"]), k


def gen_alexnet(tv_manifest):
    torch.manual_seed(0)
    model = AlexNetSmall().float().eval()
    check_layout(model, tv_manifest)
    x224 = formula_input([1, 3, 224, 224])
    x193 = formula_input([1, 3, 193, 193])
    with torch.no_grad():
        f224 = model.features(x224)
        f193 = model.features(x193)
        out224 = model(x224)
        out193 = model(x193)
    assert list(f224.shape) == [1, 16, 6, 6], f224.shape
    # at 193 the features are 5x5, so AdaptiveAvgPool2d((6,6)) upsamples
    assert list(f193.shape) == [1, 16, 5, 5], f193.shape
    assert list(out224.shape) == [1, 10] and list(out193.shape) == [1, 10]
    t = state_of(model)
    t.update(output_224=out224, output_193=out193, features_193=f193)
    return save(t, "alexnet_small.safetensors", input_formula=FORMULA), t


def gen_vgg(tv_manifest):
    torch.manual_seed(0)
    model = VGG16Small().float().eval()
    check_layout(model, tv_manifest)
    x224 = formula_input([1, 3, 224, 224])
    x193 = formula_input([1, 3, 193, 193])
    with torch.no_grad():
        f224 = model.features(x224)
        f193 = model.features(x193)
        out224 = model(x224)
        out193 = model(x193)
    assert list(f224.shape) == [1, 32, 7, 7], f224.shape
    # 193 -> 96 -> 48 -> 24 -> 12 -> 6; AdaptiveAvgPool2d((7,7)) upsamples
    assert list(f193.shape) == [1, 32, 6, 6], f193.shape
    t = state_of(model)
    t.update(output_224=out224, output_193=out193)
    return save(t, "vgg16_small.safetensors", input_formula=FORMULA), t


# ---------------------------------------------------------------- BatchNorm

class BnCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16, eps=1e-3)
        self.fc = nn.Linear(16, 10)
        self.bn3 = nn.BatchNorm1d(10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.bn2(self.conv2(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.bn3(self.fc(x))


def gen_bn():
    torch.manual_seed(0)
    model = BnCnn().float()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2, model.bn3):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n) * 0.5)
            bn.running_var.copy_(torch.rand(n) + 0.5)
            bn.weight.copy_(1 + torch.randn(n) * 0.2)
            bn.bias.copy_(torch.randn(n) * 0.2)
            bn.num_batches_tracked.fill_(7)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
    assert list(out.shape) == [2, 10]
    t = state_of(model)
    for k, v in t.items():
        if k.endswith("num_batches_tracked"):
            assert v.dtype == torch.int64 and v.dim() == 0 and v.item() == 7
        else:
            assert v.dtype == torch.float32, k
    t.update(input=x, output=out)
    return save(t, "bn_cnn.safetensors"), t


# ---------------------------------------------------------------- activations

def gen_activations():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7) * 3
    drop = nn.Dropout(0.3).eval()
    with torch.no_grad():
        t = {
            "input": x,
            "leaky_relu_0.1": nn.LeakyReLU(0.1)(x),
            "leaky_relu_default": nn.LeakyReLU()(x),
            "gelu": F.gelu(x),
            "gelu_tanh": F.gelu(x, approximate="tanh"),
            "silu": F.silu(x),
            "relu6": F.relu6(x),
            "hardswish": F.hardswish(x),
            "dropout_eval": drop(x),
        }
    assert torch.equal(t["dropout_eval"], x)
    return save(t, "activations.safetensors"), t


def main():
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    os.makedirs(FIXTURES, exist_ok=True)

    p_man, man = gen_manifests()
    results = [
        gen_alexnet(man["alexnet"]),
        gen_vgg(man["vgg16"]),
        gen_bn(),
        gen_activations(),
    ]

    rel = lambda p: os.path.relpath(p, REPO_ROOT)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"python {sys.version.split()[0]}")
    print(f"wrote {rel(p_man)} ({os.path.getsize(p_man)} bytes): "
          + ", ".join(f"{k}={len(v)} entries" for k, v in man.items()))
    for p, t in results:
        print(f"wrote {rel(p)} ({os.path.getsize(p)} bytes)")
        for k, v in t.items():
            if k.startswith(("output", "features_")) or k in ("input",):
                print(f"  {k} {list(v.shape)} max|x|={v.abs().max().item():.6f}")


if __name__ == "__main__":
    main()
