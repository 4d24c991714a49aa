#!/usr/bin/env python3
"""Generate the half-precision and remapping fixtures of tests/loading.rs.

The network (the Rust side declares the same one as `Small`):

    conv = Conv2d(1, 4, 3, padding=1); bn = BatchNorm2d(4); relu;
    max_pool2d(2); flatten(1); fc = Linear(64, 5)

torch.manual_seed(0), default init; the batch norm's running statistics are
set from three training-mode batches, then eval(). Input: the formula input
of fixture_common (shape [2, 1, 8, 8]).

What it writes (under tests/fixtures/):

  loading_f16_dp.safetensors
      The state_dict of nn.DataParallel(model) after model.half(): keys
      `module.conv.weight`, .., float tensors in F16 (num_batches_tracked stays
      I64), plus two F32 tensors a test saved beside them: `input` [2, 1, 8, 8]
      and `output` [2, 5], the float32 model's output with the F16-rounded
      weights (model.half().float()).

  loading_bf16_sub.safetensors
      A bigger checkpoint holding the network as a sub-network: the
      state_dict in BF16 under `encoder.` (`encoder.conv.weight`, ..), a
      `head.weight` [3, 5] (F32) that is not part of it, and `output` [2, 5],
      the float32 output with the BF16-rounded weights, for the same input.
"""
import copy
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from fixture_common import formula_input, save_checked

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(x, 1))


def rounded_output(model, dtype, x):
    """The float32 output with the weights rounded to `dtype` and back."""
    m = copy.deepcopy(model).to(dtype).float().eval()
    with torch.no_grad():
        return m(x)


def main():
    torch.manual_seed(0)
    model = Small()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 1, 8, 8) * 2 + 0.5)
    model.eval()
    x = formula_input([2, 1, 8, 8])

    half = copy.deepcopy(model).half()
    dp = nn.DataParallel(half)
    tensors = dict(dp.state_dict())
    assert all(k.startswith("module.") for k in tensors)
    tensors["input"] = x
    tensors["output"] = rounded_output(model, torch.float16, x)
    save_checked(tensors, os.path.join(ROOT, "loading_f16_dp.safetensors"),
                 {"source": "scripts/gen_loading_fixtures.py"})

    bf = copy.deepcopy(model).to(torch.bfloat16)
    tensors = {f"encoder.{k}": v for k, v in bf.state_dict().items()}
    tensors["head.weight"] = torch.randn(3, 5)
    tensors["output"] = rounded_output(model, torch.bfloat16, x)
    save_checked(tensors, os.path.join(ROOT, "loading_bf16_sub.safetensors"),
                 {"source": "scripts/gen_loading_fixtures.py"})


if __name__ == "__main__":
    main()
