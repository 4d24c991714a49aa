#!/usr/bin/env python3
"""Generate the fixtures of torchvision layouts written with blocks:
tests/fixtures/mobilenet_tiny.safetensors (tests/mobilenet.rs) and
tests/fixtures/vgg_spliced.safetensors (tests/splice.rs).

mobilenet_tiny:

A tiny MobileNetV2 built from torchvision's own building blocks
(torchvision.models.mobilenetv2.InvertedResidual and
torchvision.ops.misc.Conv2dNormActivation with ReLU6), laid out as
torchvision's MobileNetV2 (`features`, then `classifier` =
Sequential(Dropout(0.2), Linear)):

    features.0 = Conv2dNormActivation(3, 8, stride=2)         3x3, ReLU6
    features.1 = InvertedResidual(8, 8, stride=1, expand_ratio=1)   no expansion
    features.2 = InvertedResidual(8, 12, stride=2, expand_ratio=6)
    features.3 = InvertedResidual(12, 12, stride=1, expand_ratio=6) residual
    adaptive average pool to 1x1, flatten, classifier.1 = Linear(12, 5)

torch.manual_seed(1), torchvision's default initialisation, every batch
norm's affine parameters and running statistics randomised (seed 2) so that
eval mode matters. Keys: the state_dict, plus
    input   [2, 3, 32, 32]  the formula input (scripts/fixture_common.py)
    output  [2, 5]          model.eval()(input)
Metadata `state_dict_order`: the state_dict's keys in PyTorch's order.

vgg_spliced: torchvision's VGG feature layout, a flat Sequential made by
torchvision.models.vgg.make_layers([8, "M", 16, 16, "M"]) (conv 3x3
padding 1 + ReLU per number, max pool 2 per "M": features.0, .3, .5 hold
parameters), then flatten and classifier = Sequential(Linear(16*8*8, 10)).
torch.manual_seed(3), default initialisation, eval mode. Keys: the
state_dict, input [2, 3, 32, 32] (the formula input), output [2, 10];
metadata `state_dict_order`.
"""
import json
import os

import torch
import torch.nn as nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.ops.misc import Conv2dNormActivation

from fixture_common import formula_input, randomize_batch_norms, save_checked

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(REPO_ROOT, "tests", "fixtures", "mobilenet_tiny.safetensors")
VGG_PATH = os.path.join(REPO_ROOT, "tests", "fixtures", "vgg_spliced.safetensors")


class MobileNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            Conv2dNormActivation(3, 8, stride=2, norm_layer=nn.BatchNorm2d,
                                 activation_layer=nn.ReLU6),
            InvertedResidual(8, 8, 1, expand_ratio=1),
            InvertedResidual(8, 12, 2, expand_ratio=6),
            InvertedResidual(12, 12, 1, expand_ratio=6),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(12, 5))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


class VggSpliced(nn.Module):
    def __init__(self):
        super().__init__()
        from torchvision.models.vgg import make_layers
        self.features = make_layers([8, "M", 16, 16, "M"], batch_norm=False)
        self.classifier = nn.Sequential(nn.Linear(16 * 8 * 8, 10))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def save_model(model, path):
    x = formula_input([2, 3, 32, 32])
    with torch.no_grad():
        y = model(x)
    sd = model.state_dict()
    tensors = {k: v.contiguous() for k, v in sd.items()}
    tensors["input"] = x
    tensors["output"] = y.contiguous()
    meta = {
        "generator": "scripts/gen_layout_fixtures.py",
        "torch": torch.__version__,
        "state_dict_order": json.dumps(list(sd.keys())),
    }
    save_checked(tensors, path, meta)
    assert os.path.getsize(path) < 100_000, os.path.getsize(path)
    print(path, os.path.getsize(path), "bytes")


def main():
    torch.manual_seed(1)
    torch.set_num_threads(1)
    model = MobileNetTiny()
    randomize_batch_norms(model, 2)
    model.eval()
    save_model(model, PATH)

    torch.manual_seed(3)
    vgg = VggSpliced().eval()
    save_model(vgg, VGG_PATH)


if __name__ == "__main__":
    main()
