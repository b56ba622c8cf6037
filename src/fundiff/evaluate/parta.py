"""Scoring Part A operations on a 10-class 28x28 model with the judge: class-conditional SDEdit, visual
anagrams, hybrid images, and SDEdit of crude drawings (judge accuracy before and after).

Every rate is a record ``{"rate", "hits", "images", "ci95": [lo, hi]}`` (:func:`rate_record`, the Wilson score
interval of :func:`wilson`). Anagrams and hybrids are sampled the way ``fundiff anagram`` and ``fundiff hybrid``
sample by default (the model card's settings, the hybrid's default kernel and sigma) unless a caller overrides
them; all pairs of one measurement go through the net together, :data:`CHUNK` images per call. Each function
returns a JSON-ready dict and, under "examples", images (N, 1, 28, 28) for a picture. Seeds are fixed, so the
numbers are reproducible.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from itertools import permutations

import torch
from tqdm import tqdm

from fundiff import parta as ops
from fundiff.core.model import DiffusionModel
from fundiff.core.sampling import Sampling
from fundiff.core.views import make_view
from fundiff.evaluate.judge import JudgeNet, predict, shrink
from fundiff.train.data import Digits

CHUNK = 400
"""Images per sampling call when measuring pairs: image j (pair-major order) is sampled in call j // CHUNK with
seed ``seed + j // CHUNK``, so an image's noise never depends on how many images are asked for."""
ANAGRAM_VIEWS = ("flip", "rotate_90", "rotate_180", "transpose")
"""The views of the two-view anagrams measured (the upright image reads a, the view reads b)."""
THREE_VIEWS = ("identity", "rotate_90", "rotate_180")
"""The views of the three-view anagram measured (each view reads its own class)."""
FAR_FACTOR = 3
"""The shrink-far view shows an image at a third of its side (28 px -> 9 px) and enlarges it back."""
EXAMPLES = 10
"""Pictures show the first image of each of the first this-many pairs."""


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% for z = 1.96).

    With p = hits / n::

        centre    = (p + z^2 / (2 n)) / (1 + z^2 / n)
        half      = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
        interval  = [centre - half, centre + half]

    It stays inside [0, 1] and is not empty at 0 or n hits (0 of 10: [0, 0.278]); (0, 1) when n = 0.
    """
    if n <= 0:
        return 0.0, 1.0
    p, z2 = hits / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_record(hits: torch.Tensor) -> dict:
    """``{"rate", "hits", "images", "ci95"}`` of a boolean tensor of per-image successes."""
    h, n = int(hits.sum()), hits.numel()
    lo, hi = wilson(h, n)
    return {"rate": round(h / n, 4) if n else 0.0, "hits": h, "images": n, "ci95": [round(lo, 4), round(hi, 4)]}


def _rate(hits: torch.Tensor) -> float:
    return round(float(hits.float().mean()), 4)


def pair_key(classes: Sequence[int]) -> str:
    """"3-8" for the pair (3, 8), "1-4-7" for a triple."""
    return "-".join(str(c) for c in classes)


def per_pair(sets: Sequence[Sequence[int]], hits: torch.Tensor, n: int) -> dict[str, float]:
    """The rate of each pair (or triple) from per-image hits in pair-major order, ``n`` images per pair."""
    rates = hits.view(len(sets), n).float().mean(1).tolist()
    return {pair_key(s): round(r, 4) for s, r in zip(sets, rates, strict=True)}


def edit_rate(model: DiffusionModel, judge: JudgeNet, held: Digits, i_start: int, per_target: int = 20,
              guidance: float | None = None, seed: int = 0, sampling: Sampling | None = None) -> dict:
    """SDEdit real images of other classes toward each target class 0-9 from timesteps[i_start]; the rate
    (with hits, images and ci95) at which the judge reads the target, and the rate per target."""
    per_class, hits, examples = {}, [], []
    for target in tqdm(range(10), desc="class edits", unit="class", leave=False):
        others = (held.labels != target).nonzero().flatten()
        pick = others[torch.randperm(len(others), generator=torch.Generator().manual_seed(seed + target))]
        x0 = held.images[pick[:per_target]]
        out = ops.edit(model, x0, target, [i_start], guidance=guidance, seed=seed, sampling=sampling)[i_start]
        hit = predict(judge, out) == target
        per_class[str(target)] = _rate(hit)
        hits.append(hit)
        examples.append(torch.cat([x0[:2], out[:2]]))
    ts = ops.timesteps(model, ops.settings(model, sampling))
    record = rate_record(torch.cat(hits))
    return {"i_start": i_start, "t_start": ts[i_start], "steps": len(ts) - i_start, "edits": record["images"],
            **record, "per_target": per_class, "examples": torch.cat(examples)}


def _ordered(n_sets: int | None, seed: int, num_classes: int, k: int) -> list[tuple[int, ...]]:
    every = list(permutations(range(num_classes), k))
    order = torch.randperm(len(every), generator=torch.Generator().manual_seed(seed))
    return [every[i] for i in order[:n_sets].tolist()]


def class_pairs(n_pairs: int | None = None, seed: int = 0, num_classes: int = 10) -> list[tuple[int, int]]:
    """``n_pairs`` ordered pairs (a, b) of different classes, drawn without replacement in an order seeded by
    ``seed``; all of them (90 for 10 classes) when ``n_pairs`` is None or at least their number."""
    return _ordered(n_pairs, seed, num_classes, 2)


def class_triples(n_triples: int | None = None, seed: int = 0, num_classes: int = 10) -> list[tuple[int, int, int]]:
    """``n_triples`` ordered triples of different classes, seeded as :func:`class_pairs` (720 for 10 classes)."""
    return _ordered(n_triples, seed, num_classes, 3)


def sample_sets(op: Callable[[list[list[int]], int, int], torch.Tensor], sets: Sequence[Sequence[int]], n: int,
                seed: int = 0, desc: str = "sampling") -> torch.Tensor:
    """``n`` images of each set of classes (pair-major: images j*n .. j*n+n-1 are set j), sampled in calls of
    at most :data:`CHUNK` images: ``op(conditions, count, seed + c)`` for chunk c, where ``conditions`` holds,
    for each position in a set, one class per image of the chunk."""
    columns = [[s[i] for s in sets for _ in range(n)] for i in range(len(sets[0]))]
    total, out = len(columns[0]), []
    for c, start in enumerate(tqdm(range(0, total, CHUNK), desc=desc, unit="chunk", leave=False)):
        part = [col[start:start + CHUNK] for col in columns]
        out.append(op(part, len(part[0]), seed + c))
    return torch.cat(out)


def _first_of_each(x: torch.Tensor, n: int, sets: int) -> torch.Tensor:
    return x[torch.arange(min(sets, EXAMPLES)) * n]


def multiview_rate(model: DiffusionModel, judge: JudgeNet, views: Sequence[str], sets: Sequence[Sequence[int]],
                   n: int = 4, guidance: float | None = None, seed: int = 0,
                   sampling: Sampling | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Anagrams with class ``s[i]`` under ``views[i]`` for each set s: per view, whether the judge reads its
    class in that view (boolean, pair-major), and example rows (image in each view) of the first sets."""
    vs = [make_view(v, model.image_size) for v in views]

    def op(conditions: list[list[int]], count: int, call_seed: int) -> torch.Tensor:
        return ops.anagram(model, conditions, list(views), count, guidance=guidance, seed=call_seed,
                           sampling=sampling)

    x = sample_sets(op, sets, n, seed, f"anagrams {'+'.join(views)}")
    hits = []
    for i, v in enumerate(vs):
        want = torch.tensor([s[i] for s in sets]).repeat_interleave(n)
        hits.append(predict(judge, v.view(x)) == want)
    first = _first_of_each(x, n, len(sets))
    examples = torch.stack([v.view(first) for v in vs], 1).flatten(0, 1)
    return hits, examples


def anagram_rate(model: DiffusionModel, judge: JudgeNet, view: str, pairs: Sequence[tuple[int, int]],
                 n: int = 4, guidance: float | None = None, seed: int = 0,
                 sampling: Sampling | None = None) -> dict:
    """Anagrams of (a upright, b under ``view``), ``n`` per pair: the rates at which the judge reads a upright,
    b in the view, and both at once; the both-rate of each pair; examples (image, its view) of the first pairs."""
    (up, viewed), examples = multiview_rate(model, judge, ["identity", view], pairs, n, guidance, seed, sampling)
    both = up & viewed
    return {"views": ["identity", view], "pairs": len(pairs), "images_per_pair": n, "images": len(both),
            "upright": rate_record(up), "viewed": rate_record(viewed), "both": rate_record(both),
            "per_pair": per_pair(pairs, both, n), "examples": examples}


def anagram3_rate(model: DiffusionModel, judge: JudgeNet, triples: Sequence[tuple[int, int, int]], n: int = 4,
                  guidance: float | None = None, seed: int = 0, sampling: Sampling | None = None,
                  views: Sequence[str] = THREE_VIEWS) -> dict:
    """Three-view anagrams (class a upright, b and c under the other two views): the rate at which the judge
    reads each view's class, and all three at once; the all-rate of each triple; examples of the first."""
    hits, examples = multiview_rate(model, judge, views, triples, n, guidance, seed, sampling)
    every = torch.stack(hits).all(0)
    return {"views": list(views), "triples": len(triples), "images_per_triple": n, "images": len(every),
            **{v: rate_record(h) for v, h in zip(views, hits, strict=True)}, "all": rate_record(every),
            "per_triple": per_pair(triples, every, n), "examples": examples}


def shrink_far(images: torch.Tensor, factor: int = FAR_FACTOR) -> torch.Tensor:
    """An image as a person sees it from far: shrunk to 1/``factor`` of its side (area averaging: 28 -> 9 px)
    and enlarged back (bilinear, antialiased) to its size."""
    return shrink(images, max(1, round(images.shape[-1] / factor)))


def hybrid_kernel_sigma(model: DiffusionModel, kernel: int | None = None, sigma: float | None = None,
                        conditions: Sequence = (0, 1)) -> tuple[int, float]:
    """The Gaussian of a hybrid: the given kernel and sigma, else :func:`fundiff.parta.hybrid`'s default kernel
    and the sigma :func:`fundiff.parta.check_hybrid` picks for the model."""
    if kernel is None:
        kernel = inspect.signature(ops.hybrid).parameters["kernel"].default
    return kernel, ops.check_hybrid(model, list(conditions), kernel, None if sigma is None else [sigma])[0]


def hybrid_rate(model: DiffusionModel, judge: JudgeNet, pairs: Sequence[tuple[int, int]], n: int = 4,
                kernel: int | None = None, sigma: float | None = None, guidance: float | None = None,
                seed: int = 0, sampling: Sampling | None = None, far_judge: JudgeNet | None = None) -> dict:
    """Hybrids of (a low-pass, b high-pass), ``n`` per pair, with ``fundiff hybrid``'s defaults unless
    ``kernel`` / ``sigma`` / ``sampling`` are given. Rates: near (the image reads b), far shrunk (the image
    shrunk to a third and enlarged back reads a), far low-pass (its low-pass copy with the hybrid's own
    Gaussian reads a), and near & far for each far reading (the headline: near & shrunk); the both-rates of
    each pair; examples (image, shrunk far, low-pass far) of the first pairs. ``judge`` reads near and
    ``far_judge`` (default: ``judge``) both far copies: a judge trained on sharp digits only cannot read real
    digits from far (:func:`fundiff.evaluate.judge.random_far`)."""
    k, s = hybrid_kernel_sigma(model, kernel, sigma, pairs[0])
    overrides = {} if kernel is None and sigma is None else {"kernel": k, "sigmas": [s]}

    def op(conditions: list[list[int]], count: int, call_seed: int) -> torch.Tensor:
        return ops.hybrid(model, conditions, count, guidance=guidance, seed=call_seed, sampling=sampling,
                          **overrides)

    x = sample_sets(op, pairs, n, seed, "hybrids")
    shrunk, low = shrink_far(x), ops.lowpass_view(x, k, s)
    a = torch.tensor([p[0] for p in pairs]).repeat_interleave(n)
    b = torch.tensor([p[1] for p in pairs]).repeat_interleave(n)
    far_judge = judge if far_judge is None else far_judge
    near, far_s, far_l = predict(judge, x) == b, predict(far_judge, shrunk) == a, predict(far_judge, low) == a
    first = [_first_of_each(t, n, len(pairs)) for t in (x, shrunk, low)]
    return {"kernel": k, "sigma": s, "shrink_px": round(x.shape[-1] / FAR_FACTOR), "pairs": len(pairs),
            "images_per_pair": n, "images": len(near), "near": rate_record(near), "far_shrunk": rate_record(far_s),
            "far_lowpass": rate_record(far_l), "both_shrunk": rate_record(near & far_s),
            "both_lowpass": rate_record(near & far_l), "headline": "both_shrunk",
            "per_pair": per_pair(pairs, near & far_s, n), "per_pair_lowpass": per_pair(pairs, near & far_l, n),
            "examples": torch.stack(first, 1).flatten(0, 1)}


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
