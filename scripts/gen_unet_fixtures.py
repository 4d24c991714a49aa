#!/usr/bin/env python3
"""Generate the U-Net reference fixture used by netdsl's Rust tests.

The model is the ORIGINAL U-Net (Ronneberger, Fischer, Brox 2015,
"U-Net: Convolutional Networks for Biomedical Image Segmentation"): valid
(unpadded) 3x3 convolutions, 2x2 max pooling (stride 2), 2x2 up-convolutions
(ConvTranspose2d kernel 2, stride 2), copy-and-crop of the encoder feature
map, concatenation [cropped skip, upsampled] along the channel axis, and a
final 1x1 convolution to 2 classes. Channel widths are the paper's divided
by 16: 4, 8, 16, 32, 64.

Modules (the state_dict keys are <module>.<index>.{weight,bias}, with the
Sequential indices 0 and 2 for the two convs; up*/out have no index):

    down1  = Sequential(Conv2d(1,4,3),   ReLU, Conv2d(4,4,3),   ReLU)
    down2  = Sequential(Conv2d(4,8,3),   ReLU, Conv2d(8,8,3),   ReLU)
    down3  = Sequential(Conv2d(8,16,3),  ReLU, Conv2d(16,16,3), ReLU)
    down4  = Sequential(Conv2d(16,32,3), ReLU, Conv2d(32,32,3), ReLU)
    bottom = Sequential(Conv2d(32,64,3), ReLU, Conv2d(64,64,3), ReLU)
    up4 = ConvTranspose2d(64,32,2,stride=2); dec4 = Sequential(Conv2d(64,32,3), ReLU, Conv2d(32,32,3), ReLU)
    up3 = ConvTranspose2d(32,16,2,stride=2); dec3 = Sequential(Conv2d(32,16,3), ReLU, Conv2d(16,16,3), ReLU)
    up2 = ConvTranspose2d(16,8,2,stride=2);  dec2 = Sequential(Conv2d(16,8,3),  ReLU, Conv2d(8,8,3),   ReLU)
    up1 = ConvTranspose2d(8,4,2,stride=2);   dec1 = Sequential(Conv2d(8,4,3),   ReLU, Conv2d(4,4,3),   ReLU)
    out = Conv2d(4,2,1)

forward(x):
    d1 = down1(x); d2 = down2(pool(d1)); d3 = down3(pool(d2))
    d4 = down4(pool(d3)); b = bottom(pool(d4))
    u = up4(b); y = dec4(cat([crop(d4,u), u], 1))
    u = up3(y); y = dec3(cat([crop(d3,u), u], 1))
    u = up2(y); y = dec2(cat([crop(d2,u), u], 1))
    u = up1(y); y = dec1(cat([crop(d1,u), u], 1))
    return out(y)
  pool = max_pool2d(kernel 2, stride 2). crop(skip, u) is torchvision's
  center_crop rule: for skip HxW cropped to u's hxw,
      top  = int(round((H - h) / 2.0)),  left = int(round((W - w) / 2.0))
  (Python round: half to even) and the crop is skip[..., top:top+h,
  left:left+w].

Deterministic input formula (NOT stored in the file; the Rust side
recomputes it): for shape [N,C,H,W], the element with flat row-major index
i (i = ((n*C + c)*H + h)*W + w, from 0) is

    x[i] = float32(sin(0.37 * i + 0.1))

computed in float64, then rounded to float32. In Rust:

    ((0.37_f64 * i as f64 + 0.1).sin()) as f32

What it writes (relative to the repo root):

  tests/fixtures/unet_small.safetensors
      torch.manual_seed(0), default PyTorch init, eval(), float32. Keys: the
      state_dict (down1..4, bottom, dec4..1: .0/.2 .weight/.bias; up4..1 and
      out: .weight/.bias) plus
        output  [1,2,4,4]  model(formula input [1,1,188,188])
      Spatial sizes at 188: 188 -> 184 -> 92 -> 88 -> 44 -> 40 -> 20 -> 16
      -> 8 -> 4 (bottom), then at each decoder level up 4 -> 8, convs
      8 -> 4. Skip crops: d4 16->8, d3 40->8, d2 88->8, d1 184->8.
      The script also checks (not stored) that the paper's 572x572 input
      gives [1,2,388,388].

How to run (from the repository root):

    python3 scripts/gen_unet_fixtures.py

Requirements: torch, safetensors (pip install torch safetensors). CPU-only
is enough. Output is deterministic (float32, 1 thread, metadata keys
sorted): reruns are byte-identical.
"""

import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from fixture_common import formula_input, save_checked

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
GENERATOR = "scripts/gen_unet_fixtures.py"
FORMULA = ("x[i] = float32(sin(0.37*i + 0.1)) computed in float64, "
           "i = flat row-major index")


def meta(**extra):
    m = {"generator": GENERATOR, "torch": torch.__version__}
    m.update(extra)
    return m


def save(tensors, name, **extra):
    path = os.path.join(FIXTURES, name)
    save_checked(tensors, path, meta(**extra))
    return path


def crop(skip, u):
    """torchvision center_crop rule: crop skip's HxW to u's hxw."""
    H, W = skip.shape[-2:]
    h, w = u.shape[-2:]
    assert H >= h and W >= w, (skip.shape, u.shape)
    top = int(round((H - h) / 2.0))
    left = int(round((W - w) / 2.0))
    return skip[..., top:top + h, left:left + w]


def double_conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3), nn.ReLU(inplace=True))


class UNetSmall(nn.Module):
    def __init__(self):
        super().__init__()
        self.down1 = double_conv(1, 4)
        self.down2 = double_conv(4, 8)
        self.down3 = double_conv(8, 16)
        self.down4 = double_conv(16, 32)
        self.bottom = double_conv(32, 64)
        self.up4 = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.dec4 = double_conv(64, 32)
        self.up3 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec3 = double_conv(32, 16)
        self.up2 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec2 = double_conv(16, 8)
        self.up1 = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.dec1 = double_conv(8, 4)
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x, sizes=None):
        """sizes, if a list, collects each stage's spatial size (H)."""
        rec = (lambda t: sizes.append(t.shape[-1])) if sizes is not None \
            else (lambda t: None)
        pool = lambda t: F.max_pool2d(t, 2, 2)
        d1 = self.down1(x); rec(d1)
        p = pool(d1); rec(p)
        d2 = self.down2(p); rec(d2)
        p = pool(d2); rec(p)
        d3 = self.down3(p); rec(d3)
        p = pool(d3); rec(p)
        d4 = self.down4(p); rec(d4)
        p = pool(d4); rec(p)
        b = self.bottom(p); rec(b)
        u = self.up4(b); rec(u)
        y = self.dec4(torch.cat([crop(d4, u), u], 1)); rec(y)
        u = self.up3(y); rec(u)
        y = self.dec3(torch.cat([crop(d3, u), u], 1)); rec(y)
        u = self.up2(y); rec(u)
        y = self.dec2(torch.cat([crop(d2, u), u], 1)); rec(y)
        u = self.up1(y); rec(u)
        y = self.dec1(torch.cat([crop(d1, u), u], 1)); rec(y)
        return self.out(y)


EXPECTED_KEYS = (
    [f"{m}.{i}.{p}" for m in ("down1", "down2", "down3", "down4", "bottom")
     for i in (0, 2) for p in ("weight", "bias")]
    + [k for lvl in (4, 3, 2, 1)
       for k in (f"up{lvl}.weight", f"up{lvl}.bias")
       + tuple(f"dec{lvl}.{i}.{p}" for i in (0, 2) for p in ("weight", "bias"))]
    + ["out.weight", "out.bias"]
)


def gen_unet():
    torch.manual_seed(0)
    model = UNetSmall().float().eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert list(state) == EXPECTED_KEYS, list(state)
    assert all(v.dtype == torch.float32 for v in state.values())

    with torch.no_grad():
        sizes = []
        out = model(formula_input([1, 1, 188, 188]), sizes)
        assert sizes == [184, 92, 88, 44, 40, 20, 16, 8, 4,
                         8, 4, 8, 4, 8, 4, 8, 4], sizes
        assert list(out.shape) == [1, 2, 4, 4], out.shape
        assert out.dtype == torch.float32

        sizes572 = []
        out572 = model(formula_input([1, 1, 572, 572]), sizes572)
        assert sizes572 == [568, 284, 280, 140, 136, 68, 64, 32, 28,
                            56, 52, 104, 100, 200, 196, 392, 388], sizes572
        assert list(out572.shape) == [1, 2, 388, 388], out572.shape

    t = dict(state)
    t["output"] = out
    path = save(t, "unet_small.safetensors", input_formula=FORMULA,
                input_shape="[1,1,188,188]")
    return path, t


def main():
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    os.makedirs(FIXTURES, exist_ok=True)

    path, t = gen_unet()
    rel = os.path.relpath(path, REPO_ROOT)
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}")
    print(f"wrote {rel} ({os.path.getsize(path)} bytes)")
    for k, v in t.items():
        print(f"  {k} {list(v.shape)}")
    o = t["output"]
    print(f"  output: min={o.min().item():.6f} max={o.max().item():.6f} "
          f"mean={o.mean().item():.6f}")


if __name__ == "__main__":
    main()
