#!/usr/bin/env python3
"""Generate the zoo's any-size parity fixture (tests/models.rs): torchvision's
own resnet18 and mobilenet_v2, full width, at an image size no stride
divides (97 x 113), so that every strided layer rounds down.

What it writes: tests/fixtures/zoo_any_size.safetensors (a few KB). No
weights are stored (ResNet-18 alone has 11.7 M parameters): every parameter
is rebuilt in the Rust test from `zoo_weight(name, shape)` below, which is
the recurrent fixtures' formula (scripts/gen_recurrent_fixtures.py,
`formula(shape, name)`: element i is 0.5 * sin(0.37 * i + 0.1 +
phase(name)), rounded to float32) of the full state_dict name, then:

  weight of rank >= 2 (convolutions, linears)
                   f * 2^-k, k = floor(log2(fan_in) / 2) - 1, where fan_in
                   is the product of the shape past its first dimension
                   (powers of two, so the scaling is exact in float32)
  1-D `weight`     f + 1     (batch norm scales, 0.5 .. 1.5)
  `running_var`    f + 1     (0.5 .. 1.5)
  other 1-D        f * 0.25  (biases, running means)

num_batches_tracked is left at torchvision's 0 (eval mode does not read
it). The input is the formula input of scripts/fixture_common.py.

  resnet18.output          [1, 1000]  resnet18.eval()(input)
  mobilenet_v2.output      [1, 1000]  mobilenet_v2.eval()(input)

References are computed in float64 from the float32 values and stored as
float32.

    python3 scripts/gen_zoo_fixtures.py

Requirements: torch, torchvision, safetensors. CPU only; deterministic.
"""
import math
import os

import torch
import torchvision

from fixture_common import formula_input, save_checked
from gen_recurrent_fixtures import formula

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "zoo_any_size.safetensors")
SHAPE = (1, 3, 97, 113)


def zoo_weight(name, shape):
    f = formula(shape, name).to(torch.float32)
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        k = math.floor(math.log2(fan_in) / 2) - 1
        return f * 2.0 ** -k
    if name.endswith("running_var") or name.endswith("weight"):
        return f + 1.0
    return f * 0.25


def run(model):
    model = model.double().eval()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            t.copy_(zoo_weight(name, tuple(t.shape)).to(torch.float64))
        x = formula_input(SHAPE).to(torch.float64)
        return model(x).to(torch.float32)


def main():
    torch.set_num_threads(1)
    out = {
        "resnet18.output": run(torchvision.models.resnet18()),
        "mobilenet_v2.output": run(torchvision.models.mobilenet_v2()),
    }
    for k, v in out.items():
        print(k, tuple(v.shape), "max |y|", float(v.abs().max()), "std", float(v.std()))
    save_checked(out, OUT, {"input_shape": str(list(SHAPE))})


if __name__ == "__main__":
    main()
