#!/usr/bin/env python3
"""Generate the reference fixtures for netdsl's reusable blocks and the ops
that came with them (tests/blocks.rs).

Three files, each float32, CPU, 1 thread, metadata keys sorted, so reruns are
byte-identical. Every input is the formula input of scripts/fixture_common.py:
element i (flat row-major index, from 0) is float32(sin(0.37 * i + 0.1)),
computed in float64; in Rust `((0.37_f64 * i as f64 + 0.1).sin()) as f32`.

  tests/fixtures/blocks_resnet_small.safetensors
      A small ResNet built from torchvision's own BasicBlock
      (torchvision.models.resnet.BasicBlock): conv1 3x3 (stride 1, padding 1,
      no bias, no max pooling) -> bn1 -> relu -> layer1 = 2 blocks of width 8
      -> layer2 = blocks of width 16 (the first with stride 2 and a 1x1
      downsample) -> layer3 = the same with 32 -> adaptive average pooling ->
      fc: Linear(32, 10). torch.manual_seed(1), torchvision ResNet's own
      initialisation (kaiming_normal_ fan_out for convolutions), then every
      batch norm's weight, bias, running_mean and running_var set to seeded
      non-trivial values (num_batches_tracked = 3), so eval-mode batch norm
      matters (the script checks that resetting the statistics moves the
      output). Keys: the state_dict, plus
        input   [2, 3, 32, 32]   the formula input
        output  [2, 10]          model.eval()(input)
      and one training step from those weights (a copy of the model):
        model.train(); train.output = model(input) (batch statistics; the
        forward updates the running statistics once, momentum 0.1);
        train.loss = cross_entropy(train.output, [3, 7]); backward; one
        torch.optim.SGD(lr=0.1) step. Stored: train.output [2, 10],
        train.loss [], grad.<name> (the gradient) and train.<name> (the
        value after the step) for the parameters in SGD_CHECKED, train.<bn>.running_mean / running_var for every batch norm
        after the training forward, and train.eval_output [2, 10] =
        model.eval()(input) after the step.
      Metadata `state_dict_order` / `parameter_order`: the state_dict's keys
      and model.named_parameters()'s names in PyTorch's order, as JSON lists
      (the file itself stores keys sorted).

  tests/fixtures/blocks_restore_unet.safetensors
      A same-padded restoration U-Net over any H, W that are multiples of 4.
      DoubleConv(cin, cout) is a module whose only child is
          conv = Sequential(Conv2d(cin, cout, 3, padding=1, bias=False),
                            BatchNorm2d(cout), ReLU,
                            Conv2d(cout, cout, 3, padding=1, bias=False),
                            BatchNorm2d(cout), ReLU)
      and the network is
          inc = DoubleConv(1, 8); down1 = DoubleConv(8, 16);
          down2 = DoubleConv(16, 32)
          up2 = ConvTranspose2d(32, 16, 2, stride=2); dec2 = DoubleConv(32, 16)
          up1 = ConvTranspose2d(16, 8, 2, stride=2);  dec1 = DoubleConv(16, 8)
          out = Conv2d(8, 1, 1)
          forward(x): e1 = inc(x); e2 = down1(max_pool2d(e1, 2))
                      b = down2(max_pool2d(e2, 2))
                      d2 = dec2(cat([e2, up2(b)], 1))
                      r = out(dec1(cat([e1, up1(d2)], 1)))
                      return x + r
      torch.manual_seed(1), default initialisation, batch norm randomised as
      above. The same weights are evaluated in eval mode at two sizes:
        input_a  [1, 1, 16, 16]  output_a  [1, 1, 16, 16]
        input_b  [2, 1, 24, 20]  output_b  [2, 1, 24, 20]
      Metadata `state_dict_order` as above.

  tests/fixtures/blocks_ops.safetensors
      Parameter-free ops, each on a formula input; a network can only return
      one tensor, so the pieces of a chunk/split are concatenated back in
      another order (which only equals torch's when every piece has the right
      size and content):
        chunk2      x7 = input [2, 7, 3, 4]: a, b = torch.chunk(x7, 2, 1)
                    (4 + 3 channels); cat([b, a], 1)
        chunk3      a, b, c = torch.chunk(x7, 3, 1) (3 + 3 + 1); cat([c, b, a], 1)
        split_list  a, b = torch.split(x7, [2, 5], 1); cat([b, a], 1)
        split_int   a, b, c = torch.split(x7, 3, 1) (3 + 3 + 1); cat([c, b, a], 1)
        split_w     xw = input [1, 2, 4, 5]: a, b, c = torch.split(xw, 2, 3)
                    (2 + 2 + 1 columns); cat([c, a, b], 3)
        crop_centre xc = input [2, 2, 9, 10]:
                    torchvision center_crop(xc, [6, 5]) (top = round(1.5) = 2,
                    left = round(2.5) = 2, Python's half-to-even)
        crop_centre_8x7  center_crop(xc, [8, 7]) (top = round(0.5) = 0,
                    left = round(1.5) = 2)
        crop_at     xc.narrow(2, 5, 4).narrow(3, 1, 3): a 4x3 window at
                    top 5, left 1
        crop_sym_a  center_crop(xc, [4, 3]) (top round(2.5) = 2, left
                    round(3.5) = 4), for a network with symbolic H, W
        crop_sym_b  center_crop(input [1, 2, 11, 8], [4, 3]) (top
                    round(3.5) = 4, left round(2.5) = 2), the same network

How to run (from the repository root):

    python3 scripts/gen_block_fixtures.py

Requirements: torch, torchvision, safetensors
(pip install torch torchvision safetensors). CPU-only is enough.
"""

import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from safetensors.torch import load_file
from torchvision.models.resnet import BasicBlock

from fixture_common import formula_input, randomize_batch_norms, save_checked

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
GENERATOR = "scripts/gen_block_fixtures.py"
FORMULA = ("x[i] = float32(sin(0.37*i + 0.1)) computed in float64, "
           "i = flat row-major index")
# Each fixture must stay small (the repository commits them).
MAX_BYTES = 300_000


def meta(**extra):
    m = {"generator": GENERATOR, "torch": torch.__version__,
         "input_formula": FORMULA}
    m.update(extra)
    return m


def save(tensors, name, **extra):
    path = os.path.join(FIXTURES, name)
    save_checked(tensors, path, meta(**extra))
    assert os.path.getsize(path) < MAX_BYTES, (name, os.path.getsize(path))
    return path


def reset_statistics(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)


# --- a. ResNet-small from torchvision's BasicBlock -------------------------

class ResNetSmall(nn.Module):
    def __init__(self, widths=(8, 16, 32), num_classes=10):
        super().__init__()
        w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(3, w1, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._layer(w1, w1, 1)
        self.layer2 = self._layer(w1, w2, 2)
        self.layer3 = self._layer(w2, w3, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w3, num_classes)
        # torchvision's ResNet initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out",
                                        nonlinearity="relu")

    @staticmethod
    def _layer(cin, cout, stride):
        downsample = None
        if stride != 1 or cin != cout:
            downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                nn.BatchNorm2d(cout))
        return nn.Sequential(BasicBlock(cin, cout, stride, downsample),
                             BasicBlock(cout, cout))

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def gen_resnet():
    # Seed 1: every ReLU input of the training forward is at least
    # RELU_MARGIN away from 0 (see sgd_step); seed 0 has one at 9e-7.
    torch.manual_seed(1)
    model = ResNetSmall().float()
    randomize_batch_norms(model, seed=100)
    model.eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    order = list(state)
    assert "layer2.0.downsample.0.weight" in order
    assert "layer1.1.bn2.running_mean" in order
    assert "layer1.0.downsample.0.weight" not in order
    x = formula_input([2, 3, 32, 32])
    with torch.no_grad():
        out = model(x)
        assert list(out.shape) == [2, 10], out.shape
        # The statistics matter: resetting them moves the output.
        plain = ResNetSmall().float()
        plain.load_state_dict(state)
        reset_statistics(plain)
        moved = (plain.eval()(x) - out).abs().max().item()
        assert moved > 0.1 * max(1.0, out.abs().max().item()), moved
    # The same weights over sizes no stride divides (any size PyTorch
    # takes): the network over [B, 3, H, W] must give the same.
    x_odd = formula_input([2, 3, 33, 27])
    with torch.no_grad():
        out_odd = model(x_odd)
    t = dict(state)
    t["input"] = x
    t["output"] = out
    t["input_odd"] = x_odd
    t["output_odd"] = out_odd
    t.update(sgd_step(state, x))
    params = [n for n, _ in model.named_parameters()]
    return save(t, "blocks_resnet_small.safetensors",
                input_shape="[2,3,32,32]",
                state_dict_order=json.dumps(order, separators=(",", ":")),
                parameter_order=json.dumps(params, separators=(",", ":")),
                sgd=SGD_NOTE)


SGD_TARGETS = [3, 7]
SGD_LR = 0.1
RELU_MARGIN = 1e-5
SGD_CHECKED = ["conv1.weight", "bn1.weight", "layer1.0.conv2.weight",
               "layer2.0.downsample.0.weight", "layer2.0.downsample.1.bias",
               "layer3.1.bn2.weight", "fc.weight", "fc.bias"]
SGD_NOTE = (f"model.train(); train.output = model(input); train.loss = "
            f"cross_entropy(train.output, {SGD_TARGETS}); backward; "
            f"grad.<param> = its gradient; "
            f"SGD(lr={SGD_LR}) step; train.<param> = the parameter after it; "
            f"train.<bn>.running_* = the statistics after the one training "
            f"forward; train.eval_output = model.eval()(input) after it")


def sgd_step(state, x):
    """One training step from the fixture's weights: the train-mode output
    (batch statistics), the loss, some parameters after one SGD step, every
    running statistic after the training forward, and the eval output of the
    stepped model."""
    model = ResNetSmall().float()
    model.load_state_dict(state)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=SGD_LR)
    opt.zero_grad()
    # A ReLU input within float32 noise of 0 can flip its gate between
    # implementations and move every gradient upstream of it by ~1e-3:
    # the fixture's seed keeps all of them RELU_MARGIN away.
    nearest = []
    hooks = [m.register_forward_pre_hook(
                 lambda _m, i: nearest.append(i[0].abs().min().item()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    out = model(x)
    for h in hooks:
        h.remove()
    assert len(nearest) == 13 and min(nearest) > RELU_MARGIN, nearest
    loss = F.cross_entropy(out, torch.tensor(SGD_TARGETS))
    loss.backward()
    opt.step()
    t = {"train.output": out.detach(), "train.loss": loss.detach()}
    named = dict(model.named_parameters())
    for name in SGD_CHECKED:
        t["grad." + name] = named[name].grad
    after = model.state_dict()
    for name in SGD_CHECKED:
        assert not torch.equal(after[name], state[name]), name
        t["train." + name] = after[name]
    for name, v in after.items():
        if name.endswith(("running_mean", "running_var")):
            t["train." + name] = v
    model.eval()
    with torch.no_grad():
        t["train.eval_output"] = model(x)
    return {k: v.detach().clone() for k, v in t.items()}


# --- b. Same-padded restoration U-Net with DoubleConv blocks ---------------

class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.conv(x)


class RestoreUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inc = DoubleConv(1, 8)
        self.down1 = DoubleConv(8, 16)
        self.down2 = DoubleConv(16, 32)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec2 = DoubleConv(32, 16)
        self.up1 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec1 = DoubleConv(16, 8)
        self.out = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        e1 = self.inc(x)
        e2 = self.down1(F.max_pool2d(e1, 2))
        b = self.down2(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([e2, self.up2(b)], 1))
        r = self.out(self.dec1(torch.cat([e1, self.up1(d2)], 1)))
        return x + r


def gen_unet():
    torch.manual_seed(1)
    model = RestoreUNet().float()
    randomize_batch_norms(model, seed=101)
    model.eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    order = list(state)
    t = dict(state)
    with torch.no_grad():
        for tag, shape in (("a", [1, 1, 16, 16]), ("b", [2, 1, 24, 20])):
            x = formula_input(shape)
            y = model(x)
            assert list(y.shape) == shape, (tag, y.shape)
            # The network adds something to its input.
            assert (y - x).abs().max().item() > 0.1, tag
            t[f"input_{tag}"] = x
            t[f"output_{tag}"] = y
    return save(t, "blocks_restore_unet.safetensors",
                input_a_shape="[1,1,16,16]", input_b_shape="[2,1,24,20]",
                state_dict_order=json.dumps(order, separators=(",", ":")))


# --- c. chunk, split, crop --------------------------------------------------

def gen_ops():
    x7 = formula_input([2, 7, 3, 4])
    xw = formula_input([1, 2, 4, 5])
    xc = formula_input([2, 2, 9, 10])
    t = {}

    a, b = torch.chunk(x7, 2, 1)
    assert (a.shape[1], b.shape[1]) == (4, 3)
    t["chunk2"] = torch.cat([b, a], 1)
    a, b, c = torch.chunk(x7, 3, 1)
    assert (a.shape[1], b.shape[1], c.shape[1]) == (3, 3, 1)
    t["chunk3"] = torch.cat([c, b, a], 1)

    a, b = torch.split(x7, [2, 5], 1)
    t["split_list"] = torch.cat([b, a], 1)
    a, b, c = torch.split(x7, 3, 1)
    assert (a.shape[1], b.shape[1], c.shape[1]) == (3, 3, 1)
    t["split_int"] = torch.cat([c, b, a], 1)
    a, b, c = torch.split(xw, 2, 3)
    assert (a.shape[3], b.shape[3], c.shape[3]) == (2, 2, 1)
    t["split_w"] = torch.cat([c, a, b], 3)

    centre = TF.center_crop(xc, [6, 5])
    assert torch.equal(centre, xc[..., 2:8, 2:7])
    t["crop_centre"] = centre
    centre = TF.center_crop(xc, [8, 7])
    assert torch.equal(centre, xc[..., 0:8, 2:9])
    t["crop_centre_8x7"] = centre
    t["crop_at"] = xc.narrow(2, 5, 4).narrow(3, 1, 3)
    # Over a symbolic H, W the offsets are computed at run time.
    t["crop_sym_a"] = TF.center_crop(xc, [4, 3])  # top 2, left 4
    assert torch.equal(t["crop_sym_a"], xc[..., 2:6, 4:7])
    xs = formula_input([1, 2, 11, 8])
    t["crop_sym_b"] = TF.center_crop(xs, [4, 3])  # top 4, left 2
    assert torch.equal(t["crop_sym_b"], xs[..., 4:8, 2:5])

    return save(t, "blocks_ops.safetensors",
                x7_shape="[2,7,3,4]", xw_shape="[1,2,4,5]",
                xc_shape="[2,2,9,10]", xs_shape="[1,2,11,8]")


def main():
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    os.makedirs(FIXTURES, exist_ok=True)
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}")
    for gen in (gen_resnet, gen_unet, gen_ops):
        path = gen()
        rel = os.path.relpath(path, REPO_ROOT)
        print(f"wrote {rel} ({os.path.getsize(path)} bytes)")
        for k, v in load_file(path).items():
            if not k.endswith(("running_mean", "running_var", "bias",
                               "num_batches_tracked")):
                print(f"  {k} {list(v.shape)}"
                      + (f" max|.|={v.abs().max().item():.4f}"
                         if k.startswith(("output", "chunk", "split", "crop"))
                         else ""))


if __name__ == "__main__":
    main()
