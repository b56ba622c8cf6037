"""Crude digits from outside MNIST, for measuring SDEdit on 'hand-drawn' input (spec 1.7.1).

* :func:`draw_digit`: a digit drawn as a few pen strokes (polylines) with PIL, dark ink on white
  paper like a drawing app's PNG, jittered per seed so every drawing differs.
* :func:`sklearn_digits`: scikit-learn's bundled 8x8 handwritten digits (UCI, 1,797 images, 0-16
  grey levels) upscaled to 28x28 in the MNIST layout (bilinear to 20x20, centred with a 4-pixel border).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

# Strokes in a unit box (x right, y down); an "arc" is (cx, cy, rx, ry, start_deg, end_deg).
_ARC = "arc"
STROKES: dict[int, list] = {
    0: [(_ARC, 0.5, 0.5, 0.3, 0.42, 0, 360)],
    1: [[(0.38, 0.25), (0.55, 0.1), (0.55, 0.9)]],
    2: [(_ARC, 0.5, 0.32, 0.25, 0.22, 200, 400), [(0.7, 0.45), (0.25, 0.9), (0.78, 0.9)]],
    3: [(_ARC, 0.48, 0.3, 0.24, 0.2, 210, 450), (_ARC, 0.48, 0.7, 0.27, 0.2, 270, 510)],
    4: [[(0.62, 0.9), (0.62, 0.1), (0.2, 0.65), (0.82, 0.65)]],
    5: [[(0.75, 0.1), (0.3, 0.1), (0.27, 0.45)], (_ARC, 0.48, 0.65, 0.27, 0.25, 220, 500)],
    6: [[(0.65, 0.1), (0.3, 0.55)], (_ARC, 0.5, 0.68, 0.24, 0.22, 0, 360)],
    7: [[(0.2, 0.12), (0.8, 0.12), (0.42, 0.9)]],
    8: [(_ARC, 0.5, 0.3, 0.2, 0.19, 0, 360), (_ARC, 0.5, 0.7, 0.25, 0.21, 0, 360)],
    9: [(_ARC, 0.5, 0.32, 0.24, 0.22, 0, 360), [(0.74, 0.32), (0.62, 0.9)]],
}


def _points(stroke, jitter, size: int) -> list[tuple[float, float]]:
    """The stroke's points in pixels: one random offset for the stroke plus a small wobble per point."""
    if isinstance(stroke, tuple) and stroke[0] == _ARC:
        _, cx, cy, rx, ry, a0, a1 = stroke
        n = max(8, int(abs(a1 - a0) / 10))
        pts = [(cx + rx * math.cos(math.radians(a0 + (a1 - a0) * i / n)),
                cy + ry * math.sin(math.radians(a0 + (a1 - a0) * i / n))) for i in range(n + 1)]
    else:
        pts = list(stroke)
    dx, dy = 3 * jitter(), 3 * jitter()
    return [((x + dx + jitter()) * size, (y + dy + jitter()) * size) for x, y in pts]


def draw_digit(digit: int, seed: int = 0, size: int = 256, width: float = 0.07) -> Image.Image:
    """Digit ``digit`` as pen strokes (black on white, ``width`` of the size), slanted and jittered by ``seed``."""
    rng = random.Random(seed * 10 + digit)
    img = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(img)
    slant = rng.uniform(-0.12, 0.12)

    def jitter() -> float:
        return rng.uniform(-0.008, 0.008)

    w = max(1, round(size * width * rng.uniform(0.8, 1.2)))
    for stroke in STROKES[digit]:
        pts = [(x + slant * (size / 2 - y), y) for x, y in _points(stroke, jitter, size)]
        pen.line(pts, fill=0, width=w, joint="curve")
        for x, y in (pts[0], pts[-1]):
            pen.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=0)
    return img


def write_drawings(directory: Path, seeds: int = 3) -> list[tuple[Path, int]]:
    """PNG drawings of every digit for ``seeds`` seeds: [(path, digit)]."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in range(seeds):
        for d in range(10):
            p = directory / f"drawn_{d}_s{seed}.png"
            draw_digit(d, seed).save(p)
            out.append((p, d))
    return out


def sklearn_digits(n_per_class: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, 28, 28) in [0, 1] and labels: the first ``n_per_class`` of each digit of sklearn's 8x8 set."""
    from sklearn.datasets import load_digits

    ds = load_digits()
    x = torch.tensor(ds.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(ds.target)
    idx = torch.cat([(y == c).nonzero().flatten()[:n_per_class] for c in range(10)])
    small = F.interpolate(x[idx], size=(20, 20), mode="bilinear", align_corners=False).clamp(0, 1)
    return F.pad(small, (4, 4, 4, 4)), y[idx]
