"""Scoring Part A operations on a digit model with the judge: class-conditional SDEdit, visual
anagrams, hybrid images, and SDEdit of crude drawings (judge accuracy before and after).

Each function returns a JSON-ready dict of rates and, under "examples", a few images (N, 1, 28, 28)
for a picture. Seeds are fixed, so the numbers are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations

import torch
from tqdm import tqdm

from fundiff import parta as ops
from fundiff.core.model import DiffusionModel
from fundiff.core.sampling import Sampling
from fundiff.core.views import make_view
from fundiff.evaluate.judge import JudgeNet, predict
from fundiff.train.data import Digits


def _rate(hits: torch.Tensor) -> float:
    return round(float(hits.float().mean()), 4)


def edit_rate(model: DiffusionModel, judge: JudgeNet, held: Digits, i_start: int, per_target: int = 20,
              guidance: float | None = None, seed: int = 0, sampling: Sampling | None = None) -> dict:
    """SDEdit real digits of other classes toward each target class 0-9 from timesteps[i_start];
    the rate at which the judge reads the target."""
    per_class, examples = {}, []
    for target in tqdm(range(10), desc="class edits", unit="class", leave=False):
        others = (held.labels != target).nonzero().flatten()
        pick = others[torch.randperm(len(others), generator=torch.Generator().manual_seed(seed + target))]
        x0 = held.images[pick[:per_target]]
        out = ops.edit(model, x0, target, [i_start], guidance=guidance, seed=seed, sampling=sampling)[i_start]
        per_class[str(target)] = _rate(predict(judge, out) == target)
        examples.append(torch.cat([x0[:2], out[:2]]))
    ts = ops.timesteps(model, ops.settings(model, sampling))
    return {"i_start": i_start, "t_start": ts[i_start], "steps": len(ts) - i_start, "edits": 10 * per_target,
            "rate": round(sum(per_class.values()) / 10, 4), "per_target": per_class,
            "examples": torch.cat(examples)}


def class_pairs(n_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n_pairs`` ordered pairs of different digits, drawn without replacement with ``seed``."""
    all_pairs = list(permutations(range(10), 2))
    order = torch.randperm(len(all_pairs), generator=torch.Generator().manual_seed(seed))
    return [all_pairs[i] for i in order[:n_pairs].tolist()]


def anagram_rate(model: DiffusionModel, judge: JudgeNet, view: str, pairs: Sequence[tuple[int, int]],
                 n: int = 4, guidance: float | None = None, seed: int = 0,
                 sampling: Sampling | None = None) -> dict:
    """Anagrams of (a upright, b under ``view``): the rates at which the judge reads a upright, b in
    the view, and both at once."""
    v = make_view(view, model.image_size)
    up, viewed, examples = [], [], []
    for i, (a, b) in enumerate(tqdm(pairs, desc=f"anagrams {view}", unit="pair", leave=False)):
        x = ops.anagram(model, [a, b], ["identity", view], n, guidance=guidance, seed=seed + i, sampling=sampling)
        up.append(predict(judge, x) == a)
        viewed.append(predict(judge, v.view(x)) == b)
        examples.append(torch.stack([x[0], v.view(x)[0]]))
    up_t, viewed_t = torch.cat(up), torch.cat(viewed)
    return {"view": view, "pairs": len(pairs), "per_pair": n, "images": len(up_t), "upright": _rate(up_t),
            "viewed": _rate(viewed_t), "both": _rate(up_t & viewed_t), "examples": torch.cat(examples[:10])}


def hybrid_rate(model: DiffusionModel, judge: JudgeNet, pairs: Sequence[tuple[int, int]], n: int = 4,
                kernel: int = 33, sigma: float = 2.0, guidance: float | None = None, seed: int = 0,
                sampling: Sampling | None = None) -> dict:
    """Hybrids of (a low-pass, b high-pass): the rates at which the judge reads a on the low-pass
    (blurred) copy, b on the image itself, and both."""
    low, high, examples = [], [], []
    for i, (a, b) in enumerate(tqdm(pairs, desc="hybrids", unit="pair", leave=False)):
        x = ops.hybrid(model, [a, b], n, kernel, [sigma], guidance=guidance, seed=seed + i, sampling=sampling)
        far = ops.lowpass_view(x, kernel, sigma)
        low.append(predict(judge, far) == a)
        high.append(predict(judge, x) == b)
        examples.append(torch.stack([x[0], far[0]]))
    low_t, high_t = torch.cat(low), torch.cat(high)
    return {"kernel": kernel, "sigma": sigma, "pairs": len(pairs), "per_pair": n, "images": len(low_t),
            "low_on_blurred": _rate(low_t), "high_on_image": _rate(high_t), "both": _rate(low_t & high_t),
            "examples": torch.cat(examples[:10])}


def drawings_rate(model: DiffusionModel, judge: JudgeNet, images: torch.Tensor, labels: torch.Tensor,
                  i_starts: Sequence[int], seed: int = 0, sampling: Sampling | None = None) -> dict:
    """Judge accuracy on crude drawings as they are, and after an unconditional SDEdit (the null
    class: the edit is not told the digit) from each i_start."""
    edited = ops.edit(model, images, None, list(i_starts), seed=seed, sampling=sampling)
    ts = ops.timesteps(model, ops.settings(model, sampling))
    after = {str(i): {"t_start": ts[i], "accuracy": _rate(predict(judge, x) == labels)} for i, x in edited.items()}
    rows = [images[:10], *(x[:10] for x in edited.values())]
    return {"images": len(labels), "raw_accuracy": _rate(predict(judge, images) == labels), "edited": after,
            "examples": torch.cat(rows)}
