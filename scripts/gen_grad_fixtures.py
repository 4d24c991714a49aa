#!/usr/bin/env python3
"""Generate the gradient-parity fixtures of tests/grad_parity.rs.

What it writes: tests/fixtures/grads.safetensors (< 400 KB), three groups.

1. One case per op and option of the DSL (see CASES below). Each case is a
   tiny torch module mirrored by one network of the same case name in
   tests/grad_parity.rs (`--rust` prints those declarations). For case NAME:

     NAME.input        [..]  f32 input: torch.randn * scale, drawn after
                             torch.manual_seed(crc32(NAME)), after the
                             module is built (default PyTorch init)
     NAME.r            [..]  f32 random weights R of the loss (randn, output
                             shape, drawn next)
     NAME.state.<k>          the module's state_dict (f32; num_batches_tracked
                             i64), what the network is built from
     NAME.loss         []    loss = sum(module(input) * R), model.train()
     NAME.grad_input   [..]  d loss / d input
     NAME.grad.<k>           d loss / d parameter k, every trainable parameter
     NAME.after.<k>          batch-norm cases: every buffer after the step
                             (running_mean, running_var, num_batches_tracked)

   Batch norms get non-trivial state before the step: weight = 1 +
   0.2 randn, bias = 0.2 randn, running_mean = 0.5 randn, running_var =
   rand + 0.5, num_batches_tracked = 7 (drawn after the module is built).

2. LeNet (tests/fixtures/lenet.safetensors, input = lenet_io's `input`
   [4,1,28,28]), one training step with cross-entropy (mean) on
   lenet.targets = [3, 7, 0, 9] (i64): lenet.loss and lenet.grad.<k> for
   every parameter but fc1.weight. fc1.weight's gradient
   (48,000 values, too big for the size budget) is stored as the two factors
   PyTorch's linear backward multiplies, grad_W = G^T A, with
   lenet.fc1_grad_output G [4,120] (d loss / d fc1's output) and
   lenet.fc1_input A [4,400] (fc1's input); the generator asserts that
   G^T A in float32 equals PyTorch's fc1.weight.grad within 1e-6.

3. The batch-norm CNN of tests/cnn.rs with tests/fixtures/bn_cnn.safetensors'
   state (model.train()), on bn_cnn.input [4,3,16,16] (randn after
   torch.manual_seed(crc32("bn_cnn"))), cross-entropy (mean) on
   bn_cnn.targets [4] (i64, randint(0, 10), drawn next): bn_cnn.loss,
   bn_cnn.grad.<k>, bn_cnn.after.<buffer> (running stats and
   num_batches_tracked after the step).

Every reference is computed in float64 from the float32 inputs and
parameters (so PyTorch's own float32 rounding is not part of the
comparison), then stored as float32. Inputs are random normals: no exact
zeros (PyTorch's relu'(0) = 0, candle's is 1) and no ties inside a max-pool
window (PyTorch routes a tie's gradient to one element, candle's `maximum`
splits it) -- those are deliberately not tested.

How to run (from the repository root):

    python3 scripts/gen_grad_fixtures.py          # writes the fixture
    python3 scripts/gen_grad_fixtures.py --rust   # prints the network! cases

Requirements: torch, safetensors. CPU only; deterministic.
"""

import json
import os
import sys
import warnings
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from fixture_common import canonicalize_metadata

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
OUT = os.path.join(FIXTURES, "grads.safetensors")

torch.set_num_threads(1)
# padding="same" with an even kernel: torch warns that it pads a copy.
warnings.filterwarnings("ignore", message="Using padding='same'")


class Case(nn.Module):
    """Named submodules (the state_dict prefixes) and a forward function."""

    def __init__(self, layers, fwd):
        super().__init__()
        for k, v in layers.items():
            setattr(self, k, v)
        self._fwd = fwd

    def forward(self, x):
        return self._fwd(self, x)


def one(name, layer):
    """A case with one named layer applied to the input."""
    return lambda: Case({name: layer()}, lambda m, x: getattr(m, name)(x))


def fn(f):
    """A case with no parameters."""
    return lambda: Case({}, lambda m, x: f(x))


def conv(*a, **k):
    return one("conv", lambda: nn.Conv2d(*a, **k))


def padded_conv(pad, *a, **k):
    """F.pad(x, (left, right, top, bottom)) then the convolution."""
    return lambda: Case({"conv": nn.Conv2d(*a, **k)}, lambda m, x: m.conv(F.pad(x, pad)))


def bn2d(*a, **k):
    return one("bn", lambda: nn.BatchNorm2d(*a, **k))


def bn1d(*a, **k):
    return one("bn", lambda: nn.BatchNorm1d(*a, **k))


# (case, Rust network name, input shape, input scale, DSL chain, module)
CASES = [
    # ---- Conv2d ----------------------------------------------------------
    ("conv_basic", "ConvBasic", (2, 3, 7, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 3)", conv(3, 4, 3)),
    ("conv_stride2_pad1", "ConvStride2Pad1", (2, 3, 7, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 3, stride = 2, padding = 1)", conv(3, 4, 3, stride=2, padding=1)),
    ("conv_stride2_odd", "ConvStride2Odd", (2, 3, 9, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 3, stride = 2)", conv(3, 4, 3, stride=2)),
    ("conv_asym_pad", "ConvAsymPad", (2, 3, 7, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 3, padding = (1, 2, 0, 3))", padded_conv((1, 2, 0, 3), 3, 4, 3)),
    ("conv_axis_pad", "ConvAxisPad", (2, 3, 7, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 3, padding = (1, 2))", conv(3, 4, 3, padding=(1, 2))),
    ("conv_stride_2_1", "ConvStride21", (2, 3, 7, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 3, stride = (2, 1), padding = 1)", conv(3, 4, 3, stride=(2, 1), padding=1)),
    ("conv_stride_1_3", "ConvStride13", (2, 3, 7, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 3, stride = (1, 3))", conv(3, 4, 3, stride=(1, 3))),
    ("conv_dilation", "ConvDilation", (2, 3, 7, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 3, dilation = 2, padding = 1)", conv(3, 4, 3, dilation=2, padding=1)),
    ("conv_groups", "ConvGroups", (2, 4, 7, 8), 1.0,
     "conv: Conv2d(4 -> 6, kernel = 3, groups = 2, padding = 1)", conv(4, 6, 3, groups=2, padding=1)),
    ("conv_depthwise", "ConvDepthwise", (2, 4, 7, 8), 1.0,
     "conv: Conv2d(4 -> 4, kernel = 3, groups = 4)", conv(4, 4, 3, groups=4)),
    ("conv_no_bias", "ConvNoBias", (2, 3, 7, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 3, bias = false)", conv(3, 4, 3, bias=False)),
    ("conv_same_even", "ConvSameEven", (2, 3, 7, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 4, padding = same)", conv(3, 4, 4, padding="same")),
    ("conv_kernel_3_5", "ConvKernel35", (2, 3, 7, 8), 1.0,
     "conv: Conv2d(3 -> 4, kernel = (3, 5))", conv(3, 4, (3, 5))),
    ("conv_mixed", "ConvMixed", (2, 4, 9, 11), 1.0,
     "conv: Conv2d(4 -> 6, kernel = (3, 2), stride = (2, 3), padding = (2, 0, 1, 1), dilation = 2, groups = 2)",
     padded_conv((2, 0, 1, 1), 4, 6, (3, 2), stride=(2, 3), dilation=2, groups=2)),
    # ---- Conv2d with the activation fused into its epilogue ----------------
    ("conv_relu", "ConvRelu", (2, 3, 5, 6), 1.0,
     "conv: Conv2d(3 -> 3, kernel = 3) -> relu", lambda: Case({"conv": nn.Conv2d(3, 3, 3)}, lambda m, x: F.relu(m.conv(x)))),
    ("conv_leaky_relu", "ConvLeakyRelu", (2, 3, 5, 6), 1.0,
     "conv: Conv2d(3 -> 3, kernel = 3) -> LeakyReLU(0.2)",
     lambda: Case({"conv": nn.Conv2d(3, 3, 3)}, lambda m, x: F.leaky_relu(m.conv(x), 0.2))),
    ("conv_gelu", "ConvGelu", (2, 3, 5, 6), 1.0,
     "conv: Conv2d(3 -> 3, kernel = 3) -> GELU", lambda: Case({"conv": nn.Conv2d(3, 3, 3)}, lambda m, x: F.gelu(m.conv(x)))),
    ("conv_gelu_tanh", "ConvGeluTanh", (2, 3, 5, 6), 1.0,
     "conv: Conv2d(3 -> 3, kernel = 3) -> GELU(approximate = tanh)",
     lambda: Case({"conv": nn.Conv2d(3, 3, 3)}, lambda m, x: F.gelu(m.conv(x), approximate="tanh"))),
    ("conv_silu", "ConvSilu", (2, 3, 5, 6), 1.0,
     "conv: Conv2d(3 -> 3, kernel = 3) -> SiLU", lambda: Case({"conv": nn.Conv2d(3, 3, 3)}, lambda m, x: F.silu(m.conv(x)))),
    ("conv_sigmoid", "ConvSigmoid", (2, 3, 5, 6), 1.0,
     "conv: Conv2d(3 -> 3, kernel = 3) -> Sigmoid",
     lambda: Case({"conv": nn.Conv2d(3, 3, 3)}, lambda m, x: torch.sigmoid(m.conv(x)))),
    ("conv_bn_relu", "ConvBnRelu", (3, 3, 5, 6), 1.0,
     "conv: Conv2d(3 -> 3, kernel = 3) -> bn: BatchNorm2d -> relu",
     lambda: Case({"conv": nn.Conv2d(3, 3, 3), "bn": nn.BatchNorm2d(3)}, lambda m, x: F.relu(m.bn(m.conv(x))))),
    # ---- ConvTranspose2d, Upsample, PixelShuffle --------------------------
    ("conv_transpose", "ConvTranspose", (2, 3, 4, 5), 1.0,
     "up: ConvTranspose2d(3 -> 2, kernel = 3, stride = 2)", one("up", lambda: nn.ConvTranspose2d(3, 2, 3, stride=2))),
    ("conv_transpose_mixed", "ConvTransposeMixed", (2, 4, 3, 4), 1.0,
     "up: ConvTranspose2d(4 -> 2, kernel = (2, 3), stride = 2, padding = 1, output_padding = 1, dilation = 2, groups = 2)",
     one("up", lambda: nn.ConvTranspose2d(4, 2, (2, 3), stride=2, padding=1, output_padding=1, dilation=2, groups=2))),
    ("upsample_nearest", "UpsampleNearest", (2, 2, 4, 4), 1.0,
     "Upsample(size = (7, 6))", fn(lambda x: F.interpolate(x, size=(7, 6), mode="nearest"))),
    ("upsample_bilinear_corners", "UpsampleBilinearCorners", (2, 2, 3, 4), 1.0,
     "Upsample(size = (5, 7), mode = bilinear, align_corners = true)",
     fn(lambda x: F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True))),
    ("upsample_bilinear_x2", "UpsampleBilinearX2", (2, 2, 3, 4), 1.0,
     "Upsample(scale_factor = 2, mode = bilinear)",
     fn(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))),
    ("pixel_shuffle", "PixelShuffleNet", (2, 8, 2, 3), 1.0,
     "PixelShuffle(2)", fn(lambda x: F.pixel_shuffle(x, 2))),
    # ---- MaxPool2d -------------------------------------------------------
    ("max_pool_2", "MaxPool2", (2, 3, 7, 9), 1.0,
     "max_pool(2)", fn(lambda x: F.max_pool2d(x, 2))),
    ("max_pool_2_div", "MaxPool2Div", (2, 3, 8, 10), 1.0,
     "MaxPool2d(2)", fn(lambda x: F.max_pool2d(x, 2))),
    ("max_pool_3_2", "MaxPool32", (2, 3, 9, 11), 1.0,
     "MaxPool2d(3, stride = 2)", fn(lambda x: F.max_pool2d(x, 3, 2))),
    ("max_pool_2x3_s12", "MaxPool2x3S12", (2, 3, 7, 9), 1.0,
     "MaxPool2d(kernel = (2, 3), stride = (1, 2))", fn(lambda x: F.max_pool2d(x, (2, 3), (1, 2)))),
    ("max_pool_pad", "MaxPoolPad", (2, 3, 7, 9), 1.0,
     "MaxPool2d(3, stride = 2, padding = 1)", fn(lambda x: F.max_pool2d(x, 3, 2, padding=1))),
    ("max_pool_ceil", "MaxPoolCeil", (2, 3, 7, 9), 1.0,
     "MaxPool2d(2, ceil_mode = true)", fn(lambda x: F.max_pool2d(x, 2, ceil_mode=True))),
    ("max_pool_dilation", "MaxPoolDilation", (2, 3, 7, 9), 1.0,
     "MaxPool2d(3, stride = 1, dilation = (2, 1))", fn(lambda x: F.max_pool2d(x, 3, 1, dilation=(2, 1)))),
    ("max_pool_mixed", "MaxPoolMixed", (2, 3, 7, 9), 1.0,
     "MaxPool2d(kernel = (2, 3), stride = (2, 1), padding = 1, dilation = (1, 2), ceil_mode = true)",
     fn(lambda x: F.max_pool2d(x, (2, 3), (2, 1), padding=1, dilation=(1, 2), ceil_mode=True))),
    # ---- AvgPool2d -------------------------------------------------------
    ("avg_pool_2", "AvgPool2", (2, 3, 7, 9), 1.0,
     "avg_pool(2)", fn(lambda x: F.avg_pool2d(x, 2))),
    ("avg_pool_2_div", "AvgPool2Div", (2, 3, 8, 10), 1.0,
     "AvgPool2d(2)", fn(lambda x: F.avg_pool2d(x, 2))),
    ("avg_pool_3_2", "AvgPool32", (2, 3, 9, 11), 1.0,
     "AvgPool2d(3, stride = 2)", fn(lambda x: F.avg_pool2d(x, 3, 2))),
    ("avg_pool_2x3_s12", "AvgPool2x3S12", (2, 3, 7, 9), 1.0,
     "AvgPool2d(kernel = (2, 3), stride = (1, 2))", fn(lambda x: F.avg_pool2d(x, (2, 3), (1, 2)))),
    ("avg_pool_pad", "AvgPoolPad", (2, 3, 7, 9), 1.0,
     "AvgPool2d(3, stride = 2, padding = 1)", fn(lambda x: F.avg_pool2d(x, 3, 2, padding=1))),
    ("avg_pool_pad_exclude", "AvgPoolPadExclude", (2, 3, 7, 9), 1.0,
     "AvgPool2d(3, stride = 1, padding = 1, count_include_pad = false)",
     fn(lambda x: F.avg_pool2d(x, 3, 1, padding=1, count_include_pad=False))),
    ("avg_pool_ceil", "AvgPoolCeil", (2, 3, 7, 9), 1.0,
     "AvgPool2d(2, ceil_mode = true)", fn(lambda x: F.avg_pool2d(x, 2, ceil_mode=True))),
    # ceil_mode window overhanging the right padding: its divisor is clipped.
    ("avg_pool_ceil_pad", "AvgPoolCeilPad", (2, 3, 8, 10), 1.0,
     "AvgPool2d(3, stride = 2, padding = 1, ceil_mode = true)",
     fn(lambda x: F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True))),
    ("avg_pool_ceil_pad_exclude", "AvgPoolCeilPadExclude", (2, 3, 8, 10), 1.0,
     "AvgPool2d(3, stride = 2, padding = 1, ceil_mode = true, count_include_pad = false)",
     fn(lambda x: F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False))),
    # ---- adaptive pooling ------------------------------------------------
    ("adaptive_avg_1", "AdaptiveAvg1", (2, 3, 7, 9), 1.0,
     "AdaptiveAvgPool2d(1)", fn(lambda x: F.adaptive_avg_pool2d(x, 1))),
    ("adaptive_avg_3x4", "AdaptiveAvg3x4", (2, 3, 7, 9), 1.0,
     "AdaptiveAvgPool2d((3, 4))", fn(lambda x: F.adaptive_avg_pool2d(x, (3, 4)))),
    ("adaptive_avg_div", "AdaptiveAvgDiv", (2, 3, 8, 10), 1.0,
     "adaptive_avg_pool((4, 5))", fn(lambda x: F.adaptive_avg_pool2d(x, (4, 5)))),
    ("adaptive_avg_up", "AdaptiveAvgUp", (2, 3, 5, 5), 1.0,
     "AdaptiveAvgPool2d((6, 6))", fn(lambda x: F.adaptive_avg_pool2d(x, (6, 6)))),
    ("adaptive_max_1", "AdaptiveMax1", (2, 3, 7, 9), 1.0,
     "AdaptiveMaxPool2d(1)", fn(lambda x: F.adaptive_max_pool2d(x, 1))),
    ("adaptive_max_3x4", "AdaptiveMax3x4", (2, 3, 7, 9), 1.0,
     "AdaptiveMaxPool2d((3, 4))", fn(lambda x: F.adaptive_max_pool2d(x, (3, 4)))),
    ("adaptive_max_div", "AdaptiveMaxDiv", (2, 3, 8, 10), 1.0,
     "adaptive_max_pool((4, 5))", fn(lambda x: F.adaptive_max_pool2d(x, (4, 5)))),
    ("adaptive_max_up", "AdaptiveMaxUp", (2, 3, 5, 5), 1.0,
     "AdaptiveMaxPool2d((6, 6))", fn(lambda x: F.adaptive_max_pool2d(x, (6, 6)))),
    # ---- Linear, Flatten -------------------------------------------------
    ("linear_rank2", "LinearRank2", (3, 7), 1.0,
     "fc: Linear(7 -> 5)", one("fc", lambda: nn.Linear(7, 5))),
    ("linear_rank2_no_bias", "LinearRank2NoBias", (3, 7), 1.0,
     "fc: Linear(7 -> 5, bias = false)", one("fc", lambda: nn.Linear(7, 5, bias=False))),
    ("linear_rank3", "LinearRank3", (2, 3, 7), 1.0,
     "fc: Linear(7 -> 5)", one("fc", lambda: nn.Linear(7, 5))),
    ("linear_rank3_no_bias", "LinearRank3NoBias", (2, 3, 7), 1.0,
     "fc: Linear(7 -> 5, bias = false)", one("fc", lambda: nn.Linear(7, 5, bias=False))),
    ("flatten", "FlattenAll", (2, 3, 4, 5), 1.0,
     "flatten", fn(lambda x: torch.flatten(x, 1))),
    ("flatten_2", "Flatten2", (2, 3, 4, 5), 1.0,
     "Flatten(start_dim = 2)", fn(lambda x: torch.flatten(x, 2))),
    ("flatten_1_2", "Flatten12", (2, 3, 4, 5), 1.0,
     "Flatten(1, 2)", fn(lambda x: torch.flatten(x, 1, 2))),
    # ---- activations (scale 4: values on both sides of every kink) --------
    ("relu", "ReluNet", (2, 3, 5, 7), 4.0, "ReLU", fn(F.relu)),
    ("sigmoid", "SigmoidNet", (2, 3, 5, 7), 4.0, "Sigmoid", fn(torch.sigmoid)),
    ("tanh", "TanhNet", (2, 3, 5, 7), 4.0, "Tanh", fn(torch.tanh)),
    ("leaky_relu", "LeakyReluDefault", (2, 3, 5, 7), 4.0, "leaky_relu", fn(F.leaky_relu)),
    ("leaky_relu_0.2", "LeakyRelu02", (2, 3, 5, 7), 4.0,
     "LeakyReLU(0.2)", fn(lambda x: F.leaky_relu(x, 0.2))),
    ("gelu", "GeluErf", (2, 3, 5, 7), 4.0, "GELU", fn(F.gelu)),
    ("gelu_tanh", "GeluTanh", (2, 3, 5, 7), 4.0,
     "GELU(approximate = tanh)", fn(lambda x: F.gelu(x, approximate="tanh"))),
    ("silu", "SiluNet", (2, 3, 5, 7), 4.0, "SiLU", fn(F.silu)),
    ("relu6", "Relu6Net", (2, 3, 5, 7), 4.0, "ReLU6", fn(F.relu6)),
    ("hardswish", "HardswishNet", (2, 3, 5, 7), 4.0, "Hardswish", fn(F.hardswish)),
    # ---- softmax ---------------------------------------------------------
    ("softmax_1", "Softmax1", (2, 3, 5, 7), 2.0,
     "Softmax(dim = 1)", fn(lambda x: F.softmax(x, 1))),
    ("softmax_last", "SoftmaxLast", (2, 3, 5, 7), 2.0,
     "softmax(-1)", fn(lambda x: F.softmax(x, -1))),
    ("softmax_rank2", "SoftmaxRank2", (4, 10), 2.0,
     "Softmax(dim = 1)", fn(lambda x: F.softmax(x, 1))),
    ("log_softmax_1", "LogSoftmax1", (2, 3, 5, 7), 2.0,
     "LogSoftmax(dim = 1)", fn(lambda x: F.log_softmax(x, 1))),
    ("log_softmax_last", "LogSoftmaxLast", (2, 3, 5, 7), 2.0,
     "log_softmax(dim = -1)", fn(lambda x: F.log_softmax(x, -1))),
    # ---- batch norm, train mode ------------------------------------------
    ("bn2d", "Bn2d", (4, 3, 5, 6), 2.0,
     "bn: BatchNorm2d", bn2d(3)),
    ("bn2d_eps_momentum", "Bn2dEpsMomentum", (4, 3, 5, 6), 2.0,
     "bn: BatchNorm2d(3, eps = 1e-3, momentum = 0.3)", bn2d(3, eps=1e-3, momentum=0.3)),
    ("bn2d_no_affine", "Bn2dNoAffine", (4, 3, 5, 6), 2.0,
     "bn: BatchNorm2d(affine = false)", bn2d(3, affine=False)),
    ("bn1d_rank2", "Bn1dRank2", (6, 5), 2.0,
     "bn: BatchNorm1d", bn1d(5)),
    ("bn1d_rank3", "Bn1dRank3", (4, 3, 5), 2.0,
     "bn: BatchNorm1d(3)", bn1d(3)),
    # A batch norm right after a conv / linear: folded in inference, plain in training.
    ("conv_bn", "ConvBn", (3, 3, 6, 7), 1.0,
     "conv: Conv2d(3 -> 4, kernel = 3, bias = false) -> bn: BatchNorm2d",
     lambda: Case({"conv": nn.Conv2d(3, 4, 3, bias=False), "bn": nn.BatchNorm2d(4)},
                  lambda m, x: m.bn(m.conv(x)))),
    ("linear_bn", "LinearBn", (6, 7), 1.0,
     "fc: Linear(7 -> 4) -> bn: BatchNorm1d(4, eps = 1e-3)",
     lambda: Case({"fc": nn.Linear(7, 4), "bn": nn.BatchNorm1d(4, eps=1e-3)},
                  lambda m, x: m.bn(m.fc(x)))),
]


def randomise_bns(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                if m.affine:
                    m.weight.copy_(1 + 0.2 * torch.randn_like(m.weight))
                    m.bias.copy_(0.2 * torch.randn_like(m.bias))
                m.running_mean.copy_(0.5 * torch.randn_like(m.running_mean))
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
                m.num_batches_tracked.fill_(7)


def f32(t):
    t = t.detach()
    if t.is_floating_point():
        t = t.to(torch.float32)
    return t.contiguous().clone()


def state(model):
    """state_dict, floats as float32, integers kept."""
    return {k: f32(v) for k, v in model.state_dict().items()}


def step(model, x, loss_fn):
    """A float64 train-mode forward + backward from float32 state. Returns
    (loss, grad_input, {param: grad}, {buffer: after}); `model` is left in
    float64."""
    model.double().train()
    x = x.double().requires_grad_(True)
    out = model(x)
    loss = loss_fn(out)
    model.zero_grad()
    loss.backward()
    grads = {k: f32(p.grad) for k, p in model.named_parameters()}
    after = {k: f32(b) for k, b in model.named_buffers()}
    return out, f32(loss), f32(x.grad), grads, after


def gen_cases(tensors):
    for name, _, shape, scale, _, build in CASES:
        torch.manual_seed(zlib.crc32(name.encode()))
        model = build().float()
        randomise_bns(model)
        x = (torch.randn(*shape) * scale).float()
        assert (x != 0).all()
        st = state(model)
        # The output shape, from a throwaway float64 copy in eval mode.
        probe = build()
        probe.load_state_dict(model.state_dict())
        with torch.no_grad():
            out_shape = probe.double().eval()(x.double()).shape
        r = torch.randn(*out_shape).float()
        _, loss, gx, grads, after = step(model, x, lambda y: (y * r.double()).sum())
        tensors[f"{name}.input"] = x.contiguous()
        tensors[f"{name}.r"] = r.contiguous()
        tensors[f"{name}.loss"] = loss
        tensors[f"{name}.grad_input"] = gx
        for k, v in st.items():
            tensors[f"{name}.state.{k}"] = v
        for k, v in grads.items():
            tensors[f"{name}.grad.{k}"] = v
        for k, v in after.items():
            tensors[f"{name}.after.{k}"] = v


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


def gen_lenet(tensors):
    model = LeNet()
    model.load_state_dict(load_file(os.path.join(FIXTURES, "lenet.safetensors")))
    x = load_file(os.path.join(FIXTURES, "lenet_io.safetensors"))["input"]
    targets = torch.tensor([3, 7, 0, 9], dtype=torch.int64)
    # fc1's input and output gradient, captured to store fc1.weight's gradient
    # as its factors (see the module docstring).
    seen = {}
    model.fc1.register_forward_hook(lambda m, a, y: seen.update(a=a[0]))
    model.fc1.register_full_backward_hook(lambda m, gi, go: seen.update(g=go[0]))
    _, loss, _, grads, _ = step(model, x, lambda y: F.cross_entropy(y, targets))
    a, g = f32(seen["a"]), f32(seen["g"])
    full = grads.pop("fc1.weight")
    assert (g.t() @ a - full).abs().max() <= 1e-6 * max(1.0, full.abs().max().item())
    tensors["lenet.fc1_input"] = a
    tensors["lenet.fc1_grad_output"] = g
    tensors["lenet.targets"] = targets
    tensors["lenet.loss"] = loss
    for k, v in grads.items():
        tensors[f"lenet.grad.{k}"] = v


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


def gen_bn_cnn(tensors):
    model = BnCnn()
    sd = load_file(os.path.join(FIXTURES, "bn_cnn.safetensors"))
    model.load_state_dict({k: v for k, v in sd.items() if k not in ("input", "output")})
    torch.manual_seed(zlib.crc32(b"bn_cnn"))
    x = torch.randn(4, 3, 16, 16)
    targets = torch.randint(0, 10, (4,), dtype=torch.int64)
    _, loss, _, grads, after = step(model, x, lambda y: F.cross_entropy(y, targets))
    tensors["bn_cnn.input"] = x.contiguous()
    tensors["bn_cnn.targets"] = targets
    tensors["bn_cnn.loss"] = loss
    for k, v in grads.items():
        tensors[f"bn_cnn.grad.{k}"] = v
    for k, v in after.items():
        tensors[f"bn_cnn.after.{k}"] = v


def print_rust():
    """The network! declarations of tests/grad_parity.rs, one per case."""
    for name, net, shape, _, dsl, build in CASES:
        torch.manual_seed(0)
        model = build().double().eval()
        with torch.no_grad():
            out = model(torch.randn(*shape, dtype=torch.float64)).shape
        sym = lambda s: "[" + ", ".join(["B"] + [str(d) for d in s[1:]]) + "]"
        print(f"    /// `{name}`")
        print(f"    {net}(x: {sym(shape)}) -> {sym(out)} {{ x -> {dsl} }}")


def main():
    if "--rust" in sys.argv:
        print_rust()
        return
    tensors = {}
    gen_cases(tensors)
    gen_lenet(tensors)
    gen_bn_cnn(tensors)
    meta = {"generator": "scripts/gen_grad_fixtures.py", "torch": torch.__version__}
    save_file(tensors, OUT, metadata=meta)
    canonicalize_metadata(OUT)
    back = load_file(OUT)
    assert set(back) == set(tensors)
    size = os.path.getsize(OUT)
    print(f"{OUT}: {len(CASES)} op cases, {len(back)} tensors, {size} bytes")
    assert size < 400_000, size


if __name__ == "__main__":
    main()
