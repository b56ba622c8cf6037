"""The illusion ablation of the README ("Illusions"): anagram and hybrid success rates of a shipped model under
sampler variants, on all 90 ordered pairs of different classes, read by the cached judge.

    python bench/illusions.py                     # every variant, 1 image per pair (about 2 min per variant here)
    python bench/illusions.py anagram-cfg10 hybrid-sigma-1.75 --per-pair 2 --model digits
    python bench/illusions.py anagram-default anagram-cfg5 --view rotate_90

Each variant prints one JSON line: the rates (upright / viewed / both at once for anagrams; near, far as shrunk
to a third, far as the low-pass copy, and both for hybrids) with the 95% Wilson interval of the headline rate.
The variants change one lever at a time from the commands' defaults (50 steps, posterior variance, CFG 10 at
every step, classifier guidance s = 100 for anagrams and 30 for hybrids: ``anagram-no-classifier``,
``anagram-classifier-S``, ``hybrid-classifier-S`` and ``hybrid-classifier-A-B``, a scale per band, vary it);
``anagram-balanced-P`` weights each view by the length of its CFG direction to the power P (the view whose class
shows least gets the most say); ``anagram-negative`` is the Visual Anagrams paper's negative prompt (each view
pushed away from the other view's class), ``anagram-alternate`` denoises one view per step instead of averaging both,
``anagram-resample-4`` renoises and denoises each step 4 times (RePaint's resampling, an MCMC corrector for
the product of the views), ``anagram-best-of-4`` draws 4 anagrams per pair and keeps the one the model itself
reads best in both views (a diffusion classifier: the class whose noise prediction fits best at 5 noise
levels; the judge is not asked), and prints also the oracle (any of the 4 read right);
``anagram-clean-image-mean`` averages the views' clipped clean-image estimates instead of their noise estimates,
``anagram-guidance-*`` applies CFG only on that range of t/T, and ``anagram-plain-defaults`` samples with the
model card's plain settings (DPM-Solver++(2M), 20 steps, CFG 5 on t/T in [0.5, 0.9] for the digits).
``--model`` also takes a run folder or weights file; ``--judge`` and ``--far-judge`` read with other judge files
(e.g. ones trained on all 60,000 MNIST digits) for an independent measurement. Hybrids are read near by the judge
and far by the far judge (``fundiff judge train --far``), which reads real digits shrunk to 9 px as well as sharp
ones.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from itertools import permutations
from pathlib import Path

import torch
import torch.nn.functional as F

from fundiff import parta as ops
from fundiff.core.bands import frequency_bands, hybrid_denoiser
from fundiff.core.contract import Denoiser, Output
from fundiff.core.loop import level_tensor, make_step, predict_x0
from fundiff.core.sampling import Sampling
from fundiff.core.views import View, anagram_denoiser, make_view
from fundiff.evaluate.judge import load_judge, predict
from fundiff.evaluate.parta import shrink_far, wilson
from fundiff.evaluate.runs import judge_for
from fundiff.models import load_diffusion_model
from fundiff.train.data import load_digits

BASE = {"steps": 50, "variance": "posterior", "guidance": 10.0}
ANAGRAMS = {
    "anagram-default": {},
    "anagram-cfg5": {"guidance": 5.0},
    "anagram-cfg20": {"guidance": 20.0},
    "anagram-beta-variance": {"guidance": 5.0, "variance": "beta"},
    "anagram-spec-part-a": {"guidance": 5.0, "steps": None, "stride": 9},
    "anagram-300-steps": {"steps": 300},
    "anagram-negative": {"guidance": 5.0, "negative": 3.0},
    "anagram-alternate": {"alternate": True},
    "anagram-ddim": {"sampler": "ddim"},
    "anagram-resample-4": {"resample": 4},
    "anagram-best-of-4": {"best_of": 4},
    "anagram-guidance-0.5-1": {"interval": (0.5, 1.0)},
    "anagram-guidance-0-0.5": {"interval": (0.0, 0.5)},
    "anagram-clean-image-mean": {"x0_mean": True},
    "anagram-dpmpp-20": {"sampler": "dpmpp-2m", "steps": 20},
    "anagram-no-classifier": {"classifier_scale": 0.0},
    "anagram-classifier-10": {"classifier_scale": 10.0},
    "anagram-classifier-30": {"classifier_scale": 30.0},
    "anagram-classifier-300": {"classifier_scale": 300.0},
    "anagram-balanced-1": {"balance": 1.0},
    "anagram-balanced-2": {"balance": 2.0},
    "anagram-balanced-4": {"balance": 4.0},
    "anagram-plain-defaults": {"sampler": "dpmpp-2m", "steps": 20, "guidance": 5.0, "interval": (0.5, 0.9)},
}
HYBRIDS = {f"hybrid-sigma-{s:g}": {"sigma": s} for s in (1.0, 1.25, 1.5, 1.75, 2.0, 2.5)}
HYBRIDS["hybrid-sigma-1.75-cfg5"] = {"sigma": 1.75, "guidance": 5.0}
HYBRIDS["hybrid-sigma-1.75-no-classifier"] = {"sigma": 1.75, "classifier_scale": 0.0}
HYBRIDS["hybrid-classifier-10"] = {"sigma": 1.75, "classifier_scale": 10.0}
HYBRIDS["hybrid-classifier-20"] = {"sigma": 1.75, "classifier_scale": 20.0}
HYBRIDS["hybrid-classifier-30"] = {"sigma": 1.75, "classifier_scale": 30.0}
HYBRIDS["hybrid-classifier-50"] = {"sigma": 1.75, "classifier_scale": 50.0}
HYBRIDS["hybrid-classifier-100-200"] = {"sigma": 1.75, "band_scales": (100.0, 200.0)}
HYBRIDS["hybrid-classifier-50-100"] = {"sigma": 1.75, "band_scales": (50.0, 100.0)}
HYBRIDS["hybrid-block-4-cfg5"] = {"block": 4, "guidance": 5.0}


def _sampling(cfg: dict) -> Sampling:
    steps, stride = cfg.get("steps", BASE["steps"]), cfg.get("stride")
    return Sampling(sampler=cfg.get("sampler", "ddpm"), steps=steps, stride=stride,
                    variance=cfg.get("variance", BASE["variance"]), clip=True,
                    guidance=cfg.get("guidance", BASE["guidance"]), guidance_interval=cfg.get("interval", (0.0, 1.0)),
                    classifier_scale=cfg.get("classifier_scale"))


def _negative(model, cond, other, gamma: float, weight: float) -> Denoiser:
    """eps = eps_u + gamma (eps_c - eps_u) - weight (eps_other - eps_u)."""
    c, u, o = model.denoiser(cond), model.denoiser(None), model.denoiser(other)

    def fn(x: torch.Tensor, k: torch.Tensor) -> Output:
        pc, pu, po = c(x, k), u(x, k), o(x, k)
        return pc.with_value(pu.value + gamma * (pc.value - pu.value) - weight * (po.value - pu.value), pc.variance)

    return fn


def _alternate(fns: list[Denoiser], views: list[View]) -> Denoiser:
    """Step i denoises only view i mod n: eps = v^-1(eps(v(x_t), p))."""
    count = [0]

    def fn(x: torch.Tensor, k: torch.Tensor) -> Output:
        i = count[0] % len(views)
        count[0] += 1
        p = fns[i](views[i].view(x), k)
        return p.with_value(views[i].inverse_view(p.value), p.variance)

    return fn


def _clean_image_mean(model, fns: list[Denoiser], views: list[View]) -> Denoiser:
    """The views combined in clean-image space: x0_i = clip((v_i(x_t) - sqrt(1 - abar) eps_i) / sqrt(abar)),
    x0 = (1/n) sum_i v_i^-1(x0_i), eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar) (the noise-space mean, spec 1.8,
    is the same before clipping)."""
    lo, hi = model.value_range

    def fn(x: torch.Tensor, k: torch.Tensor) -> Output:
        abar = model.schedule.abar(k).to(x.dtype).view(-1, 1, 1, 1)
        preds = [f(v.view(x), k) for f, v in zip(fns, views)]
        x0 = torch.stack([v.inverse_view(predict_x0(v.view(x), p.value, abar).clamp(lo, hi))
                          for p, v in zip(preds, views)]).mean(0)
        return preds[0].with_value((x - abar.sqrt() * x0) / (1 - abar).sqrt(), preds[0].variance)

    return fn


def _balanced(model, conds: list, views: list[View], gamma: float, power: float) -> Denoiser:
    """Views weighted by how little their class shows: d_i = ||eps_c_i - eps_u_i|| per image (the guidance
    direction's length: large where view i does not yet look like its class), w_i = d_i^p / sum_j d_j^p,
    eps = sum_i w_i v_i^-1(eps_u_i + gamma (eps_c_i - eps_u_i)) (p = 0 is the plain mean)."""
    cs, u = [model.denoiser(c) for c in conds], model.denoiser(None)

    def fn(x: torch.Tensor, k: torch.Tensor) -> Output:
        guided, lengths = [], []
        for c, v in zip(cs, views):
            pc, pu = c(v.view(x), k), u(v.view(x), k)
            guided.append(v.inverse_view(pu.value + gamma * (pc.value - pu.value)))
            lengths.append((pc.value - pu.value).flatten(1).norm(dim=1))
        w = torch.stack(lengths) ** power
        w = (w / w.sum(0, keepdim=True)).view(len(views), -1, 1, 1, 1)
        return pc.with_value((w * torch.stack(guided)).sum(0), pc.variance)

    return fn


def _resampled(model, fn: Denoiser, x: torch.Tensor, s: Sampling, g: torch.Generator, repeats: int) -> torch.Tensor:
    """Each step t -> t' taken ``repeats`` times: after all but the last, x_t = sqrt(a) x_t' + sqrt(1 - a) z with
    a = abar_t / abar_t' (back to level t, RePaint's resampling)."""
    step = make_step(model.schedule, s, model.value_range)
    levels = model.schedule.levels(ops.timesteps(model, s))
    for cur, nxt in zip(levels[:-1], levels[1:]):
        for r in range(repeats):
            x_next, _ = step(x, fn(x, level_tensor(cur, x)), cur, nxt, g)
            if r < repeats - 1 and nxt >= 0:
                a = model.schedule.abar(cur) / model.schedule.abar(nxt)
                x = a.sqrt() * x_next + (1 - a).sqrt() * torch.randn(x.shape, generator=g)
        x = x_next
    return x


@torch.no_grad()
def class_errors(model, x01: torch.Tensor, levels=(30, 75, 120, 165, 210), seed: int = 1234) -> torch.Tensor:
    """(B, classes) mean squared noise-prediction error of every class at a few noise levels: the model's own
    reading of the images (a diffusion classifier; the lowest error wins)."""
    x0, classes = model.to_model_range(x01), model.num_classes
    g, err = torch.Generator().manual_seed(seed), torch.zeros(len(x0), classes)
    for k in levels:
        eps = torch.randn(x0.shape, generator=g)
        abar = model.schedule.abar(k)
        x_t = (abar.sqrt() * x0 + (1 - abar).sqrt() * eps).repeat(classes, 1, 1, 1)
        conds = [c for c in range(classes) for _ in range(len(x0))]
        pred = model.denoiser(conds)(x_t, torch.full((len(x_t),), k, dtype=torch.long)).eps
        err += ((pred - eps.repeat(classes, 1, 1, 1)) ** 2).flatten(1).mean(1).view(classes, -1).T
    return err / len(levels)


def _margin(err: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """How much better the wanted class fits than the best other class (> 0: the model reads it)."""
    own = err.gather(1, want[:, None])[:, 0]
    return err.scatter(1, want[:, None], float("inf")).min(1).values - own


def anagram_variant(model, judge, cfg: dict, a: list[int], b: list[int], seed: int) -> dict:
    if cfg.get("best_of"):
        return best_of(model, judge, cfg, a, b, seed)
    s = ops.settings(model, _sampling(cfg), illusion=True)
    views = [make_view("identity", 28), make_view(cfg.get("view", "flip"), 28)]
    if cfg.get("negative"):
        fns = [_negative(model, a, b, s.guidance, cfg["negative"]), _negative(model, b, a, s.guidance, cfg["negative"])]
    else:
        fns = [ops.guided(model, c, s) for c in (a, b)]
    if cfg.get("balance"):
        fn = _balanced(model, [a, b], views, s.guidance, cfg["balance"])
    elif cfg.get("x0_mean"):
        fn = _clean_image_mean(model, fns, views)
    else:
        fn = _alternate(fns, views) if cfg.get("alternate") else anagram_denoiser(fns, views)
    return _read_anagram(model, judge, views, fn, s, a, b, seed, cfg.get("resample"))


def _read_anagram(model, judge, views: list[View], fn: Denoiser, s: Sampling, a: list[int], b: list[int], seed: int,
                  resample: int | None = None) -> dict:
    """Sample the anagrams of ``fn`` from seeded noise and read them upright (class a) and viewed (class b)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(a), 1, 28, 28, generator=g)
    if resample:
        out = ops._out(model, _resampled(model, fn, x, s, g, resample))
    else:
        out = ops._out(model, ops.sample(model, fn, x, ops.timesteps(model, s), s, g))
    up, viewed = predict(judge, out) == torch.tensor(a), predict(judge, views[1].view(out)) == torch.tensor(b)
    return {"upright": _r(up), "viewed": _r(viewed), "both": _r(up & viewed), "ci95": wilson(int((up & viewed).sum()),
                                                                                           len(a))}


def best_of(model, judge, cfg: dict, a: list[int], b: list[int], seed: int) -> dict:
    """``best_of`` anagrams per pair; the kept one maximises min(margin upright, margin viewed) of the model's
    own reading (:func:`class_errors`)."""
    k, view = cfg["best_of"], make_view(cfg.get("view", "flip"), 28)
    out = ops.anagram(model, [[c for c in a for _ in range(k)], [c for c in b for _ in range(k)]],
                      ["identity", view.name], len(a) * k, seed=seed, sampling=_sampling(cfg))
    want_a, want_b = torch.tensor(a).repeat_interleave(k), torch.tensor(b).repeat_interleave(k)
    score = torch.minimum(_margin(class_errors(model, out), want_a),
                          _margin(class_errors(model, view.view(out)), want_b)).view(len(a), k)
    hits = ((predict(judge, out) == want_a) & (predict(judge, view.view(out)) == want_b)).view(len(a), k)
    kept = hits[torch.arange(len(a)), score.argmax(1)]
    return {"both": _r(kept), "ci95": wilson(int(kept.sum()), len(a)), "mean_of_all": _r(hits),
            "oracle_any_of_k": _r(hits.any(1))}


def _block_bands(factor: int) -> list:
    """[P, I - P], P the projection onto factor x factor blocks (average, then repeat): an exact split at 28 px."""

    def low(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")

    return [low, lambda x: x - low(x)]


def hybrid_variant(model, judges, cfg: dict, a: list[int], b: list[int], seed: int) -> dict:
    judge, far_judge = judges
    if cfg.get("band_scales"):
        s = ops.settings(model, _sampling(cfg), illusion=True)
        fns = [ops.guided(model, c, replace(s, classifier_scale=k)) for c, k in zip((a, b), cfg["band_scales"])]
        fn = hybrid_denoiser(fns, frequency_bands(33, [cfg["sigma"]]))
        g = torch.Generator().manual_seed(seed)
        x = ops._out(model, ops.sample(model, fn, torch.randn(len(a), 1, 28, 28, generator=g),
                                       ops.timesteps(model, s), s, g))
        lowpassed = ops.lowpass_view(x, 33, cfg["sigma"])
    elif cfg.get("block"):
        s = ops.settings(model, _sampling(cfg), illusion=True)
        fn = hybrid_denoiser([ops.guided(model, c, s) for c in (a, b)], _block_bands(cfg["block"]))
        g = torch.Generator().manual_seed(seed)
        x = ops._out(model, ops.sample(model, fn, torch.randn(len(a), 1, 28, 28, generator=g),
                                       ops.timesteps(model, s), s, g))
        lowpassed = _block_bands(cfg["block"])[0](x)
    else:
        x = ops.hybrid(model, [a, b], len(a), 33, [cfg["sigma"]], seed=seed, sampling=_sampling(cfg))
        lowpassed = ops.lowpass_view(x, 33, cfg["sigma"])
    near = predict(judge, x) == torch.tensor(b)
    far = predict(far_judge, shrink_far(x)) == torch.tensor(a)
    low = predict(far_judge, lowpassed) == torch.tensor(a)
    return {"near": _r(near), "far_shrunk": _r(far), "far_lowpass": _r(low), "both": _r(near & far),
            "both_lowpass": _r(near & low), "ci95": wilson(int((near & far).sum()), len(a))}


def _r(hits: torch.Tensor) -> float:
    return round(float(hits.float().mean()), 3)


def main() -> None:
    variants: dict[str, tuple[Callable, dict]] = {**{k: (anagram_variant, v) for k, v in ANAGRAMS.items()},
                                                  **{k: (hybrid_variant, v) for k, v in HYBRIDS.items()}}
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help=f"variants (default all): {', '.join(variants)}")
    ap.add_argument("--model", default="digits")
    ap.add_argument("--per-pair", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--view", default="flip", help="the anagram variants' second view (default flip)")
    ap.add_argument("--judge", type=Path, help="read with this judge file instead (e.g. one trained on other digits: "
                    "fundiff judge train --data-dir DIR --out FILE)")
    ap.add_argument("--far-judge", type=Path, help="read hybrids from far with this far judge file instead")
    args = ap.parse_args()
    model = load_diffusion_model(args.model, "cpu")
    data = model.info["recipe"]["data"]
    source = load_digits(data).source
    judge, far_judge = (load_judge(path)[0] if path else judge_for(data, source, None, far=far)[0]
                        for far, path in ((False, args.judge), (True, args.far_judge)))
    pairs = [p for p in permutations(range(10), 2) for _ in range(args.per_pair)]
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    for name in args.names or list(variants):
        fn, cfg = variants[name]
        cfg = {"view": args.view, **cfg} if fn is anagram_variant else cfg
        t0 = time.perf_counter()
        rates = fn(model, (judge, far_judge) if fn is hybrid_variant else judge, cfg, a, b, args.seed)
        print(json.dumps({"variant": name, **cfg, "images": len(a), **rates,
                          "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
