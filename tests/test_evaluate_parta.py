"""fundiff.evaluate.parta and ``fundiff evaluate-parta`` on the shipped digit model."""

from __future__ import annotations

import json
import os

import torch
from helpers import run_cli
from torch import nn

from fundiff import parta as ops
from fundiff.evaluate import parta
from fundiff.evaluate.drawings import draw_digit, sklearn_digits
from fundiff.models import load_diffusion_model
from fundiff.train.data import split_holdout

FAST = ops.Sampling(steps=12)


class CentroidJudge(nn.Module):
    """Logits = minus the pixel distance to each class's mean held-out digit."""

    def __init__(self, held) -> None:
        super().__init__()
        self.c = torch.stack([held.images[held.labels == k].mean(0) for k in range(10)]).flatten(1)

    def forward(self, x):
        return -torch.cdist(x.flatten(1), self.c)


def test_scores_are_rates_and_pairs_are_distinct(digits):
    held = split_holdout(digits, 50)[1]
    judge, model = CentroidJudge(held), load_diffusion_model("digits")
    pairs = parta.class_pairs(3, seed=1)
    assert len(set(pairs)) == 3 and all(a != b for a, b in pairs)
    e = parta.edit_rate(model, judge, held, 4, per_target=2, sampling=FAST)
    assert e["edits"] == 20 and 0 <= e["rate"] <= 1 and e["examples"].shape == (40, 1, 28, 28)
    assert e["rate"] >= 0.5, "edits toward a class from a late start read as that class"
    a = parta.anagram_rate(model, judge, "flip", pairs, n=2, sampling=FAST)
    assert a["images"] == 6 and 0 <= a["both"] <= min(a["upright"], a["viewed"])
    h = parta.hybrid_rate(model, judge, pairs, n=2, kernel=9, sigma=1.5, sampling=FAST)
    assert h["images"] == 6 and 0 <= h["both"] <= min(h["low_on_blurred"], h["high_on_image"])


def test_drawings_are_real_external_digits():
    x, y = sklearn_digits(3)
    assert x.shape == (30, 1, 28, 28) and y.tolist() == [c for c in range(10) for _ in range(3)]
    assert x[..., :4, :].abs().max() == 0 and 0.9 < x.max() <= 1.0, "MNIST layout: a blank border, light ink"
    a, b = draw_digit(7, seed=0), draw_digit(7, seed=1)
    assert a.size == (256, 256) and a.tobytes() != b.tobytes() and a.tobytes() == draw_digit(7, seed=0).tobytes()


def test_cli_evaluate_parta_end_to_end(tmp_path):
    cache = tmp_path / "cache"
    env_cache = {"FUNDIFF_CACHE": str(cache)}
    os.environ.update(env_cache)
    try:
        assert run_cli("judge", "train", "--epochs", "1").returncode == 0
        out = tmp_path / "pa"
        proc = run_cli("evaluate-parta", "--pairs", "2", "--per-pair", "1", "--per-target", "2", "--out", out)
    finally:
        os.environ.pop("FUNDIFF_CACHE")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "parta_eval.json").read_text())["results"]
    assert set(res) == {"edit", "anagram_flip", "anagram_rotate_90", "hybrid", "drawn", "sklearn_8x8"}
    assert res["drawn"]["images"] == 30 and len(res["drawn"]["edited"]) == 3
    assert all((out / f"{k}.png").is_file() for k in res)
    assert len(list((out / "drawings").glob("drawn_*.png"))) == 30
