#!/usr/bin/env python3
"""Generate the PyTorch reference fixtures used by netdsl's Rust tests.

What it writes (all under tests/fixtures/, relative to the repo root):

  lenet.safetensors
      state_dict of the LeNet model below, default PyTorch initialisation
      after torch.manual_seed(0). Keys (all contiguous float32):
        conv1.weight [6,1,5,5]    conv1.bias [6]
        conv2.weight [16,6,5,5]   conv2.bias [16]
        fc1.weight   [120,400]    fc1.bias   [120]
        fc2.weight   [84,120]     fc2.bias   [84]
        fc3.weight   [10,84]      fc3.bias   [10]

  lenet_io.safetensors
      input       [4,1,28,28]  torch.randn, drawn right after the model is
                               built (same seed stream)
      output      [4,10]       model(input), float32, under torch.no_grad()
      softmax     [4,10]       output.softmax(dim=1)
      log_softmax [4,10]       output.log_softmax(dim=1)

  conv_output_sizes.json
      Output spatial sizes obtained by actually running torch ops on zero
      tensors of shape [1,1,H,W] (not computed from a formula):
        "conv2d":            [{h,w,kh,kw,stride,padding:[ph,pw],dilation,out:[oh,ow]}]
        "conv2d_errors":     same fields minus "out" (torch raised)
        "max_pool2d":        [{h,w,k,stride,out:[oh,ow]}]   (padding 0, ceil_mode False)
        "max_pool2d_errors": same fields minus "out"
        "avg_pool2d":        as max_pool2d
        "avg_pool2d_errors": as max_pool2d_errors
      The conv2d grid is thinned to h == w or (h,w) in {(7,28),(28,7)} to keep
      the file small.

  ops.safetensors
      Per-op parity cases (see gen_ops): for each case NAME, the keys
        NAME.input, NAME.output           float32, input drawn after
                                          torch.manual_seed(crc32(NAME))
        NAME.<layer>.weight/.bias         the case module's state_dict
      Each case is one small torch module (a layer or a short chain)
      mirrored by one network in tests/ops_parity.rs.

How to run (from the repository root):

    python3 scripts/gen_fixtures.py

Requirements: torch and safetensors (pip install torch safetensors).
CPU-only is enough. Output is deterministic (seed 0, float32, 1 thread).
"""

import itertools
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from fixture_common import canonicalize_metadata

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


EXPECTED_LENET = {
    "conv1.weight": [6, 1, 5, 5],
    "conv1.bias": [6],
    "conv2.weight": [16, 6, 5, 5],
    "conv2.bias": [16],
    "fc1.weight": [120, 400],
    "fc1.bias": [120],
    "fc2.weight": [84, 120],
    "fc2.bias": [84],
    "fc3.weight": [10, 84],
    "fc3.bias": [10],
}
EXPECTED_IO = {
    "input": [4, 1, 28, 28],
    "output": [4, 10],
    "softmax": [4, 10],
    "log_softmax": [4, 10],
}


def gen_lenet():
    torch.manual_seed(0)
    model = LeNet().float().eval()
    x = torch.randn(4, 1, 28, 28, dtype=torch.float32)
    with torch.no_grad():
        out = model(x)
        sm = out.softmax(dim=1)
        lsm = out.log_softmax(dim=1)

    state = {k: v.detach().to(torch.float32).contiguous().clone()
             for k, v in model.state_dict().items()}
    meta = {"generator": "scripts/gen_fixtures.py", "torch": torch.__version__}
    p_model = os.path.join(FIXTURES, "lenet.safetensors")
    save_file(state, p_model, metadata=meta)

    io = {
        "input": x.contiguous(),
        "output": out.contiguous(),
        "softmax": sm.contiguous(),
        "log_softmax": lsm.contiguous(),
    }
    p_io = os.path.join(FIXTURES, "lenet_io.safetensors")
    save_file(io, p_io, metadata=meta)
    return p_model, p_io, out


def out_hw(t):
    return [int(t.shape[-2]), int(t.shape[-1])]


def gen_sizes():
    # conv2d grid
    hw_vals = [1, 5, 7, 8, 28, 32]
    kernels = [(1, 1), (3, 3), (5, 5), (2, 4), (7, 3)]
    strides = [1, 2, 3]
    paddings = [(0, 0), (1, 1), (2, 2), (0, 1), (3, 2)]
    dilations = [1, 2]
    extra_hw = {(7, 28), (28, 7)}

    conv, conv_err = [], []
    for h, w in itertools.product(hw_vals, hw_vals):
        if not (h == w or (h, w) in extra_hw):
            continue  # thinning, see module docstring
        x = torch.zeros(1, 1, h, w)
        for (kh, kw), s, (ph, pw), d in itertools.product(
                kernels, strides, paddings, dilations):
            wgt = torch.zeros(1, 1, kh, kw)
            rec = {"h": h, "w": w, "kh": kh, "kw": kw, "stride": s,
                   "padding": [ph, pw], "dilation": d}
            try:
                y = F.conv2d(x, wgt, stride=s, padding=(ph, pw), dilation=d)
            except RuntimeError:
                conv_err.append(rec)
                continue
            rec["out"] = out_hw(y)
            conv.append(rec)

    # pooling grid
    pool_hw = [1, 2, 5, 7, 8, 28]
    pool_k = [1, 2, 3, 5]
    pool_s = [1, 2, 3]
    pools = {}
    for name, fn in (("max_pool2d", F.max_pool2d), ("avg_pool2d", F.avg_pool2d)):
        ok, err = [], []
        for h, w, k, s in itertools.product(pool_hw, pool_hw, pool_k, pool_s):
            rec = {"h": h, "w": w, "k": k, "stride": s}
            try:
                y = fn(torch.zeros(1, 1, h, w), k, stride=s, padding=0,
                       ceil_mode=False)
            except RuntimeError:
                err.append(rec)
                continue
            rec["out"] = out_hw(y)
            ok.append(rec)
        pools[name] = ok
        pools[name + "_errors"] = err

    table = {
        "conv2d": conv,
        "conv2d_errors": conv_err,
        "max_pool2d": pools["max_pool2d"],
        "max_pool2d_errors": pools["max_pool2d_errors"],
        "avg_pool2d": pools["avg_pool2d"],
        "avg_pool2d_errors": pools["avg_pool2d_errors"],
    }
    # One record per line: compact but diff-friendly.
    p = os.path.join(FIXTURES, "conv_output_sizes.json")
    with open(p, "w") as f:
        f.write("{\n")
        keys = list(table)
        for i, key in enumerate(keys):
            f.write(f"  {json.dumps(key)}: [\n")
            recs = table[key]
            for j, r in enumerate(recs):
                sep = "," if j + 1 < len(recs) else ""
                f.write("    " + json.dumps(r, separators=(",", ":")) + sep + "\n")
            f.write("  ]" + ("," if i + 1 < len(keys) else "") + "\n")
        f.write("}\n")
    with open(p) as f:  # sanity: valid JSON
        json.load(f)
    return p, {k: len(v) for k, v in table.items()}


class _Chain(nn.Module):
    """A small case module: named layers (state_dict names) applied in
    order, with an optional F.pad before (F.pad order: left, right, top,
    bottom) and plain functions interleaved."""

    def __init__(self, steps):
        super().__init__()
        self.steps = []
        for step in steps:
            if isinstance(step, tuple):
                name, mod = step
                self.add_module(name, mod)
                self.steps.append(mod)
            else:
                self.steps.append(step)

    def forward(self, x):
        for f in self.steps:
            x = f(x)
        return x


def _ops_cases():
    """(name, input shape, input scale, module steps). Mirrored one to one
    by the networks in tests/ops_parity.rs."""
    conv = nn.Conv2d
    x4 = (2, 3, 9, 11)
    return [
        # Conv2d options
        ("conv_asym_pad", x4, 1.0, [
            lambda x: F.pad(x, (1, 2, 0, 3)),
            ("conv", conv(3, 4, 3, padding=0))]),
        ("conv_axis_pad", x4, 1.0, [("conv", conv(3, 4, 3, padding=(1, 2)))]),
        ("conv_stride_2_1", x4, 1.0, [("conv", conv(3, 4, 3, stride=(2, 1), padding=1))]),
        ("conv_stride_1_3", x4, 1.0, [("conv", conv(3, 4, 3, stride=(1, 3)))]),
        ("conv_dilation", x4, 1.0, [("conv", conv(3, 4, 3, dilation=2, padding=1))]),
        ("conv_groups", (2, 4, 9, 11), 1.0, [("conv", conv(4, 6, 3, groups=2, padding=1))]),
        ("conv_depthwise", (2, 4, 9, 11), 1.0, [("conv", conv(4, 4, 3, groups=4))]),
        ("conv_depthwise_mult", (2, 4, 9, 11), 1.0, [("conv", conv(4, 8, 3, groups=4, padding=1))]),
        ("conv_same_odd", x4, 1.0, [("conv", conv(3, 4, 3, padding="same"))]),
        ("conv_same_even", x4, 1.0, [("conv", conv(3, 4, 4, padding="same"))]),
        ("conv_same_even_rect", x4, 1.0, [("conv", conv(3, 4, (2, 4), padding="same"))]),
        ("conv_same_dilated", x4, 1.0, [("conv", conv(3, 4, 4, dilation=2, padding="same"))]),
        ("conv_kernel_3_5", x4, 1.0, [("conv", conv(3, 4, (3, 5)))]),
        ("conv_no_bias", x4, 1.0, [("conv", conv(3, 4, 3, bias=False))]),
        ("conv_stride_2_odd", x4, 1.0, [("conv", conv(3, 4, 3, stride=2))]),
        ("conv_mixed", (2, 4, 9, 11), 1.0, [
            lambda x: F.pad(x, (2, 0, 1, 1)),
            ("conv", conv(4, 6, (3, 2), stride=(2, 3), dilation=2, groups=2))]),
        ("conv_chain", x4, 1.0, [
            ("c1", conv(3, 4, 3, padding=1)), nn.ReLU(),
            ("c2", conv(4, 5, (2, 3), stride=(1, 2), groups=1, bias=False)), nn.Tanh()]),
        # pooling (floor mode, no padding)
        ("max_pool_3_2", x4, 1.0, [nn.MaxPool2d(3, stride=2)]),
        ("avg_pool_3_2", x4, 1.0, [nn.AvgPool2d(3, stride=2)]),
        ("max_pool_2x3", x4, 1.0, [nn.MaxPool2d((2, 3))]),
        ("avg_pool_2x3", x4, 1.0, [nn.AvgPool2d((2, 3))]),
        ("max_pool_2x3_s12", x4, 1.0, [nn.MaxPool2d((2, 3), stride=(1, 2))]),
        ("avg_pool_2x3_s12", x4, 1.0, [nn.AvgPool2d((2, 3), stride=(1, 2))]),
        # linear and flatten
        ("linear_rank3", (2, 5, 7), 1.0, [("fc", nn.Linear(7, 6))]),
        ("linear_rank3_no_bias", (2, 5, 7), 1.0, [("fc", nn.Linear(7, 6, bias=False))]),
        ("flatten_2", (2, 3, 4, 5), 1.0, [nn.Flatten(start_dim=2)]),
        ("flatten_2_linear", (2, 3, 4, 5), 1.0, [
            nn.Flatten(start_dim=2), ("fc", nn.Linear(20, 6))]),
        # activations on a 4-D tensor (scaled so sigmoid and tanh saturate)
        ("sigmoid", x4, 4.0, [nn.Sigmoid()]),
        ("tanh", x4, 4.0, [nn.Tanh()]),
        ("relu", x4, 1.0, [nn.ReLU()]),
        ("softmax_1", x4, 3.0, [nn.Softmax(dim=1)]),
        ("log_softmax_last", x4, 3.0, [nn.LogSoftmax(dim=-1)]),
    ]


def gen_ops():
    """tests/fixtures/ops.safetensors: one key group per case, see the
    module docstring. Each case seeds torch with crc32(name), so cases do not
    depend on each other's order."""
    import warnings
    import zlib

    tensors = {}
    for name, shape, scale, steps in _ops_cases():
        torch.manual_seed(zlib.crc32(name.encode()))
        model = _Chain(steps).float().eval()
        x = torch.randn(*shape, dtype=torch.float32) * scale
        with torch.no_grad(), warnings.catch_warnings():
            # padding="same" with an even kernel: torch warns that it pads a copy.
            warnings.simplefilter("ignore", UserWarning)
            y = model(x)
        tensors[f"{name}.input"] = x.contiguous().clone()
        tensors[f"{name}.output"] = y.contiguous().clone()
        for k, v in model.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().to(torch.float32).contiguous().clone()
    meta = {"generator": "scripts/gen_fixtures.py", "torch": torch.__version__}
    p = os.path.join(FIXTURES, "ops.safetensors")
    save_file(tensors, p, metadata=meta)
    back = load_file(p)
    assert set(back) == set(tensors)
    for k, t in back.items():
        assert t.dtype == torch.float32 and t.is_contiguous(), k
    return p, len(_ops_cases())


def check(path, expected):
    t = load_file(path)
    assert set(t) == set(expected), (path, sorted(t))
    for k, shape in expected.items():
        assert list(t[k].shape) == shape, (k, list(t[k].shape), shape)
        assert t[k].dtype == torch.float32, (k, t[k].dtype)
        assert t[k].is_contiguous(), k


def main():
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    os.makedirs(FIXTURES, exist_ok=True)

    p_model, p_io, out = gen_lenet()
    check(p_model, EXPECTED_LENET)
    check(p_io, EXPECTED_IO)
    p_json, counts = gen_sizes()
    p_ops, n_ops = gen_ops()
    for p in (p_model, p_io, p_ops):
        canonicalize_metadata(p)

    rel = lambda p: os.path.relpath(p, REPO_ROOT)
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}")
    for p in (p_model, p_io, p_json, p_ops):
        print(f"wrote {rel(p)} ({os.path.getsize(p)} bytes)")
    print(f"lenet output max |x| = {out.abs().max().item():.6f}")
    print("records: " + ", ".join(f"{k}={n}" for k, n in counts.items()))
    print(f"ops parity cases: {n_ops}")


if __name__ == "__main__":
    main()
