#!/usr/bin/env python3
"""Write data/digits.bin: the 1,797 8x8 handwritten digits scikit-learn ships.

The images are scikit-learn's copy of the UCI "Optical Recognition of
Handwritten Digits" test set (Alpaydin & Kaynak, 1998; CC BY 4.0). Run from
the repo root: `pip install scikit-learn && python3 scripts/gen_digits.py`.

Format (little endian):
    b"NDIG"            magic
    u32 count          number of images (1797)
    u32 height, width  8, 8
    count records of height*width + 1 bytes: the pixels (0..=16, row-major),
    then the label (0..=9).
"""
import struct

from sklearn.datasets import load_digits


def main():
    d = load_digits()
    images = d.images.astype("uint8")
    labels = d.target.astype("uint8")
    n, h, w = images.shape
    assert images.max() <= 16 and labels.max() <= 9
    with open("data/digits.bin", "wb") as f:
        f.write(b"NDIG")
        f.write(struct.pack("<III", n, h, w))
        for img, label in zip(images, labels):
            f.write(img.tobytes())
            f.write(bytes([label]))
    print(f"data/digits.bin: {n} images of {h}x{w}")


if __name__ == "__main__":
    main()
