"""Few-step samplers against DDPM-300, side by side in one run: seconds per 400 images, net calls per image, judge
accuracy and Frechet distance (the ``fundiff evaluate`` measures), and each time as a ratio to DDPM-300 and to a
plain implementation's DDPM-300 (fp32, CFG at every step, timed on ``--plain-images`` images and scaled per image).

    python bench/samplers.py [--model digits] [--per-class 40] [--plain-images 40]
"""

from __future__ import annotations

import argparse
import time

import torch
from speed import counting  # bench/speed.py, beside this file

from fundiff import parta
from fundiff.core.sampling import Sampling
from fundiff.evaluate.metrics import accuracy_table, frechet_report
from fundiff.evaluate.runs import judge_for
from fundiff.models import load
from fundiff.train.data import load_digits, split_holdout
from fundiff.train.recipes import Recipe

VARIANTS = {
    "DDPM-300 (the card's until now)": Sampling(sampler="ddpm", stride=1, variance="beta"),
    "DDIM-50": Sampling(sampler="ddim", steps=50),
    "DPM-Solver++(2M), 10 steps": Sampling(sampler="dpmpp-2m", steps=10),
    "DPM-Solver++(2M), 15 steps": Sampling(sampler="dpmpp-2m", steps=15),
    "DPM-Solver++(2M), 20 steps (default)": Sampling(sampler="dpmpp-2m", steps=20),
    "DPM-Solver++(2M), 25 steps": Sampling(sampler="dpmpp-2m", steps=25),
}
PLAIN = Sampling(sampler="ddpm", stride=1, variance="beta", guidance_interval=(0.0, 1.0))


def run(model, labels: list[int], sampling: Sampling) -> tuple[torch.Tensor, float, float]:
    counted, calls = counting(model)
    t0 = time.perf_counter()
    x = parta.generate(counted, labels, len(labels), seed=0, sampling=sampling)
    return x, time.perf_counter() - t0, calls[0] / len(labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="digits", help="digits, fashion or a class run")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--plain-images", type=int, default=40)
    a = ap.parse_args()
    model = load(a.model, "cpu")
    recipe = Recipe.from_dict(model.info["recipe"])
    digits = load_digits(recipe.data)
    train, held = split_holdout(digits, recipe.holdout_per_class)
    judge, _, _ = judge_for(recipe.data, digits.source, None)
    labels = [c for c in range(10) for _ in range(a.per_class)]
    n = len(labels)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {a.model}, {n} images, guidance "
          f"{model.sampling.guidance:g} on {model.sampling.guidance_interval}")
    plain = load(a.model, "cpu", precision="fp32")
    _, plain_s, plain_nfe = run(plain, labels[:: max(1, n // a.plain_images)][: a.plain_images], PLAIN)
    plain_per_400 = plain_s / a.plain_images * 400
    rows = {}
    for name, s in VARIANTS.items():
        x, seconds, nfe = run(model, labels, s.over(model.sampling))
        fd = frechet_report(judge, x, train, held, a.per_class)
        rows[name] = (seconds / n * 400, nfe, accuracy_table(judge, x, torch.tensor(labels))["overall"], fd["ratio"])
        print(f"  {name:<38} {rows[name][0]:7.1f} s/400  {nfe:5.1f} calls/img  acc {rows[name][2]:.4f}  "
              f"FD ratio {rows[name][3]:.2f}", flush=True)
    base = rows["DDPM-300 (the card's until now)"][0]
    print(f"\nplain DDPM-300 (fp32, CFG at every step): {plain_per_400:.1f} s per 400 images, "
          f"{plain_nfe:.0f} calls/img (timed on {a.plain_images} images)")
    print(f"{'sampler':<38} {'s/400':>7} {'calls':>6} {'acc':>7} {'FD/real':>8} {'x DDPM-300':>11} {'x plain':>8}")
    for name, (sec, nfe, acc, ratio) in rows.items():
        print(f"{name:<38} {sec:7.1f} {nfe:6.1f} {acc:7.4f} {ratio:8.2f} {sec / base:11.3f} {sec / plain_per_400:8.3f}")


if __name__ == "__main__":
    main()
