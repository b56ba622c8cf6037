"""Judge-measure ``fundiff generate --model digits --class K`` with its defaults against the old Part A path.

    python tools/measure_generate.py [PER_CLASS]

Prints, for each path: judge accuracy on K, mean brightness vs real held-out digits, Frechet distance and the
real-vs-real baseline at the same n (the judge is the cached one of ``fundiff evaluate``; trained if missing).
"""

from __future__ import annotations

import sys

import torch

from fundiff import parta
from fundiff.core.sampling import Sampling
from fundiff.evaluate.metrics import accuracy_table, frechet_report
from fundiff.evaluate.runs import judge_for
from fundiff.models import load
from fundiff.train.data import load_digits, split_holdout


def main(per_class: int = 20) -> None:
    model = load("digits", "cpu")
    digits = load_digits("mnist")
    train, held = split_holdout(digits, 50)
    judge, _, _ = judge_for("mnist", digits.source, None)
    paths = {"the card's default (DPM-Solver++(2M)-20, CFG 5 on [0.5, 0.9])": None,
             "old Part A path (stride 9, posterior variance, CFG 5 at every step)": parta.spec_part_a(model)}
    print(f"real held-out digits: mean brightness {held.images.mean():.4f}")
    for name, sampling in paths.items():
        s = parta.settings(model, sampling or Sampling())
        x = torch.cat([parta.generate(model, k, per_class, seed=k, sampling=s, progress=f"class {k}")
                       for k in range(10)])
        labels = torch.arange(10).repeat_interleave(per_class)
        acc = accuracy_table(judge, x, labels)["overall"]
        fd = frechet_report(judge, x, train, held, per_class)
        print(f"{name}: accuracy {acc:.4f}, brightness {x.mean():.4f}, FD {fd['frechet']:.1f} "
              f"(real-vs-real {fd['frechet_real_vs_real']:.1f}, ratio {fd['ratio']:.2f}), n = {len(x)}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
