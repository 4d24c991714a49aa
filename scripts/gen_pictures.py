#!/usr/bin/env python3
"""Write the pictures' assets: the test photographs and the font.

data/photos/*.png: four public-domain photographs from scikit-image's
`skimage/data` (licences in data/photos/README.md), scaled with Lanczos so
the longer side is 256 pixels and both sides are multiples of 8 (so 2x, 4x
and 8x down- and up-sampling divide them), saved as optimised PNG.

assets/fonts/DejaVuSans.ttf: DejaVu Sans 2.37 cut down to Latin-1, Greek,
dashes, quotes, arrows and a few maths signs, hinting dropped (ab_glyph does
not hint), licence in assets/fonts/LICENSE-DejaVu.txt.

Run from the repo root:

    pip install pillow fonttools scikit-image
    python3 scripts/gen_pictures.py /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf

The font argument is DejaVu Sans from Debian's `fonts-dejavu-core` (or the
copy in matplotlib's wheel, `matplotlib/mpl-data/fonts/ttf/DejaVuSans.ttf`).
scikit-image is only read, never imported, so an extracted wheel on
PYTHONPATH works too.
"""
import importlib.util
import os
import sys

from fontTools import subset
from PIL import Image

# (file written, file in skimage/data)
PHOTOS = [
    ("astronaut.png", "astronaut.png"),
    ("rocket.png", "rocket.jpg"),
    ("hubble_deep_field.png", "hubble_deep_field.jpg"),
    ("camera.png", "camera.png"),
]
LONG_SIDE = 256
UNICODES = (
    "U+0020-007E,U+00A0-00FF,U+0391-03A9,U+03B1-03C9,U+2013-2014,U+2018-201D,"
    "U+2022,U+2026,U+2190-2193,U+2212,U+2248,U+2264-2265"
)


def photos():
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        sys.exit("scikit-image not found: pip install scikit-image")
    src = os.path.join(os.path.dirname(spec.origin), "data")
    os.makedirs("data/photos", exist_ok=True)
    for out, name in PHOTOS:
        im = Image.open(os.path.join(src, name))
        w, h = im.size
        s = LONG_SIDE / max(w, h)
        size = (round(w * s / 8) * 8, round(h * s / 8) * 8)
        path = os.path.join("data/photos", out)
        im.resize(size, Image.LANCZOS).save(path, "PNG", optimize=True)
        print(f"{path}: {size[0]}x{size[1]} {im.mode}, {os.path.getsize(path)} bytes")


def font(dejavu):
    os.makedirs("assets/fonts", exist_ok=True)
    path = "assets/fonts/DejaVuSans.ttf"
    subset.main([
        dejavu,
        f"--unicodes={UNICODES}",
        "--no-hinting",
        "--layout-features=kern,liga",
        f"--output-file={path}",
    ])
    print(f"{path}: {os.path.getsize(path)} bytes")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    photos()
    font(sys.argv[1])


if __name__ == "__main__":
    main()
