#!/usr/bin/env python3
"""Generate the sequence-op parity fixtures of tests/sequence_parity.rs:
Conv1d (every option, causal), 1-D pooling, transposes and Embedding
(with padding_idx), forward and gradients.

What it writes: tests/fixtures/sequence.safetensors (a few KB).

For every case NAME of CASES (a tiny torch module mirrored by one network of
the same case name in tests/sequence_parity.rs; `--rust` prints them):

  NAME.input        f32 input [B, C, T] (or [B, T, F]): randn, drawn after
                    torch.manual_seed(crc32(NAME)), after the module is
                    built (PyTorch's default init)
  NAME.r            f32 random weights R of the loss (randn, output shape)
  NAME.state.<k>    the module's state_dict (f32)
  NAME.loss         loss = sum(module(input) * R)
  NAME.grad_input   d loss / d input
  NAME.grad.<k>     d loss / d parameter k

The Embedding cases (EMBEDDINGS) have integer ids instead of a float input:

  NAME.ids          i64 [B, T] token ids (including the padding index)
  NAME.r, NAME.state.emb.weight, NAME.loss, NAME.grad.emb.weight  as above
                    (the padding row's gradient is zero)

References are computed in float64 from the float32 inputs and parameters,
then stored as float32. A causal convolution is PyTorch's Conv1d after
F.pad(x, (dilation * (k - 1), 0)).

How to run (from the repository root):

    python3 scripts/gen_sequence_fixtures.py          # writes the fixture
    python3 scripts/gen_sequence_fixtures.py --rust   # prints the network! cases

Requirements: torch, safetensors. CPU only; deterministic.
"""

import os
import sys
import warnings
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from fixture_common import save_checked

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "sequence.safetensors")

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message="Using padding='same'")


class Case(nn.Module):
    def __init__(self, layers, fwd):
        super().__init__()
        for k, v in layers.items():
            setattr(self, k, v)
        self._fwd = fwd

    def forward(self, x):
        return self._fwd(self, x)


def conv(*a, **k):
    return lambda: Case({"conv": nn.Conv1d(*a, **k)}, lambda m, x: m.conv(x))


def causal(cin, cout, k, dilation=1, **kw):
    left = dilation * (k - 1)
    return lambda: Case({"conv": nn.Conv1d(cin, cout, k, dilation=dilation, **kw)},
                        lambda m, x: m.conv(F.pad(x, (left, 0))))


def fn(f):
    return lambda: Case({}, lambda m, x: f(x))


# (case, Rust network name, input shape, DSL chain, module)
CASES = [
    ("conv1d_basic", "Conv1dBasic", (2, 3, 10),
     "conv: Conv1d(3 -> 4, kernel = 3)", conv(3, 4, 3)),
    ("conv1d_stride2_pad1", "Conv1dStride2Pad1", (2, 3, 11),
     "conv: Conv1d(3 -> 4, kernel = 3, stride = 2, padding = 1)", conv(3, 4, 3, stride=2, padding=1)),
    ("conv1d_stride3", "Conv1dStride3", (3, 2, 13),
     "conv: Conv1d(2 -> 3, kernel = 4, stride = 3)", conv(2, 3, 4, stride=3)),
    ("conv1d_dilation", "Conv1dDilation", (2, 3, 12),
     "conv: Conv1d(3 -> 4, kernel = 3, dilation = 2, padding = 1)", conv(3, 4, 3, dilation=2, padding=1)),
    ("conv1d_groups", "Conv1dGroups", (2, 4, 9),
     "conv: Conv1d(4 -> 6, kernel = 3, groups = 2, padding = 1)", conv(4, 6, 3, groups=2, padding=1)),
    ("conv1d_depthwise", "Conv1dDepthwise", (2, 4, 9),
     "conv: Conv1d(4 -> 4, kernel = 5, groups = 4)", conv(4, 4, 5, groups=4)),
    ("conv1d_no_bias", "Conv1dNoBias", (2, 3, 8),
     "conv: Conv1d(3 -> 4, kernel = 3, bias = false)", conv(3, 4, 3, bias=False)),
    ("conv1d_same_even", "Conv1dSameEven", (2, 3, 9),
     "conv: Conv1d(3 -> 4, kernel = 4, padding = same)", conv(3, 4, 4, padding="same")),
    ("conv1d_same_dilated", "Conv1dSameDilated", (2, 3, 9),
     "conv: Conv1d(3 -> 2, kernel = 3, dilation = 3, padding = same)",
     conv(3, 2, 3, dilation=3, padding="same")),
    ("conv1d_mixed", "Conv1dMixed", (2, 4, 15),
     "conv: Conv1d(4 -> 6, kernel = 3, stride = 2, padding = 2, dilation = 2, groups = 2)",
     conv(4, 6, 3, stride=2, padding=2, dilation=2, groups=2)),
    ("conv1d_causal", "Conv1dCausal", (2, 3, 10),
     "conv: Conv1d(3 -> 4, kernel = 3, causal = true)", causal(3, 4, 3)),
    ("conv1d_causal_dilated", "Conv1dCausalDilated", (2, 3, 10),
     "conv: Conv1d(3 -> 4, kernel = 3, dilation = 4, causal = true)", causal(3, 4, 3, dilation=4)),
    ("conv1d_batch4", "Conv1dBatch4", (4, 5, 16),
     "conv: Conv1d(5 -> 3, kernel = 5, padding = 2)", conv(5, 3, 5, padding=2)),
    ("max_pool1d_2", "MaxPool1d2", (2, 3, 9), "MaxPool1d(2)", fn(lambda x: F.max_pool1d(x, 2))),
    ("max_pool1d_3_2_pad", "MaxPool1d32Pad", (2, 3, 10),
     "MaxPool1d(3, stride = 2, padding = 1)", fn(lambda x: F.max_pool1d(x, 3, 2, 1))),
    ("max_pool1d_ceil_dil", "MaxPool1dCeilDil", (2, 3, 11),
     "MaxPool1d(2, stride = 2, dilation = 2, ceil_mode = true)",
     fn(lambda x: F.max_pool1d(x, 2, 2, 0, dilation=2, ceil_mode=True))),
    ("avg_pool1d_2", "AvgPool1d2", (2, 3, 9), "AvgPool1d(2)", fn(lambda x: F.avg_pool1d(x, 2))),
    ("avg_pool1d_pad_exclude", "AvgPool1dPadExclude", (2, 3, 9),
     "AvgPool1d(3, stride = 2, padding = 1, count_include_pad = false)",
     fn(lambda x: F.avg_pool1d(x, 3, 2, 1, count_include_pad=False))),
    ("avg_pool1d_ceil", "AvgPool1dCeil", (2, 3, 10),
     "AvgPool1d(3, stride = 2, ceil_mode = true)",
     fn(lambda x: F.avg_pool1d(x, 3, 2, ceil_mode=True))),
    ("adaptive_avg1d_4", "AdaptiveAvg1d4", (2, 3, 10), "AdaptiveAvgPool1d(4)",
     fn(lambda x: F.adaptive_avg_pool1d(x, 4))),
    ("adaptive_avg1d_1", "AdaptiveAvg1d1", (2, 3, 7), "AdaptiveAvgPool1d(1)",
     fn(lambda x: F.adaptive_avg_pool1d(x, 1))),
    ("adaptive_max1d_3", "AdaptiveMax1d3", (2, 3, 10), "AdaptiveMaxPool1d(3)",
     fn(lambda x: F.adaptive_max_pool1d(x, 3))),
    ("transpose_conv", "TransposeConv", (2, 7, 3),
     "Transpose(1, 2) -> conv: Conv1d(3 -> 4, kernel = 3, padding = 1) -> Transpose(1, 2)",
     lambda: Case({"conv": nn.Conv1d(3, 4, 3, padding=1)},
                  lambda m, x: m.conv(x.transpose(1, 2)).transpose(1, 2))),
]

# (case, Rust network name, ids shape, vocab, dim, padding_idx)
EMBEDDINGS = [
    ("embedding", "Embed", (2, 5), 7, 3, None),
    ("embedding_pad", "EmbedPad", (3, 4), 6, 4, 0),
    ("embedding_pad_neg", "EmbedPadNeg", (2, 6), 5, 2, -1),
]


def f32(t):
    t = t.detach()
    if t.is_floating_point():
        t = t.to(torch.float32)
    return t.contiguous().clone()


def gen_cases(tensors):
    for name, _, shape, _, build in CASES:
        torch.manual_seed(zlib.crc32(name.encode()))
        model = build().float()
        x = torch.randn(*shape).float()
        st = {k: f32(v) for k, v in model.state_dict().items()}
        with torch.no_grad():
            out_shape = model(x).shape
        r = torch.randn(*out_shape).float()
        model.double().train()
        xd = x.double().requires_grad_(True)
        loss = (model(xd) * r.double()).sum()
        loss.backward()
        tensors[f"{name}.input"] = x
        tensors[f"{name}.r"] = r
        tensors[f"{name}.loss"] = f32(loss)
        tensors[f"{name}.grad_input"] = f32(xd.grad)
        for k, v in st.items():
            tensors[f"{name}.state.{k}"] = v
        for k, p in model.named_parameters():
            tensors[f"{name}.grad.{k}"] = f32(p.grad)


def gen_embeddings(tensors):
    for name, _, shape, vocab, dim, pad in EMBEDDINGS:
        torch.manual_seed(zlib.crc32(name.encode()))
        emb = nn.Embedding(vocab, dim, padding_idx=pad)
        ids = torch.randint(0, vocab, shape, dtype=torch.int64)
        if pad is not None:
            ids[0, 0] = pad % vocab
            ids[-1, -1] = pad % vocab
        st = {k: f32(v) for k, v in emb.state_dict().items()}
        if pad is not None:
            assert (st["weight"][pad] == 0).all()
            # A non-zero padding row, as a loaded one may be: the output
            # still reads it, the gradient still skips it.
            with torch.no_grad():
                emb.weight[pad] = torch.randn(dim)
            st = {k: f32(v) for k, v in emb.state_dict().items()}
        r = torch.randn(*shape, dim).float()
        emb.double()
        loss = (emb(ids) * r.double()).sum()
        loss.backward()
        if pad is not None:
            assert (emb.weight.grad[pad] == 0).all()
        tensors[f"{name}.ids"] = ids
        tensors[f"{name}.r"] = r
        tensors[f"{name}.loss"] = f32(loss)
        tensors[f"{name}.state.emb.weight"] = st["weight"]
        tensors[f"{name}.grad.emb.weight"] = f32(emb.weight.grad)


def print_rust():
    for name, net, shape, dsl, build in CASES:
        torch.manual_seed(0)
        model = build().double().eval()
        with torch.no_grad():
            out = model(torch.randn(*shape, dtype=torch.float64)).shape
        sym = lambda s: "[" + ", ".join(["B"] + [str(d) for d in s[1:]]) + "]"
        print(f"    /// `{name}`")
        print(f"    {net}(x: {sym(shape)}) -> {sym(out)} {{ x -> {dsl} }}")
    for name, net, shape, vocab, dim, pad in EMBEDDINGS:
        p = "" if pad is None else f", padding_idx = {pad}"
        print(f"    /// `{name}`")
        print(f"    {net}(ids: [B, {shape[1]}] u32) -> [B, {shape[1]}, {dim}] "
              f"{{ ids -> emb: Embedding({vocab}, {dim}{p}) }}")


def main():
    if "--rust" in sys.argv:
        print_rust()
        return
    tensors = {}
    gen_cases(tensors)
    gen_embeddings(tensors)
    meta = {"generator": "scripts/gen_sequence_fixtures.py", "torch": torch.__version__}
    save_checked(tensors, OUT, meta)
    print(f"wrote {OUT}: {len(tensors)} tensors, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
