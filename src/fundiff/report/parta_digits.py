"""Part A (spec.md 0, 1.1-1.9) on the digit model fundiff ships: the reports' figures at 28 px, T = 300.

The digit model is class-conditioned, so a class plays the part of a prompt and the null class the
part of the empty prompt; "a high quality photo" (1.3-1.7) becomes the null class. Timesteps scale
with T: the reports' t = 250, 500, 750 of 1000 are t = 75, 150, 225 of 300; the strided loop has
stride 9 (297, 288, ..., 0: 34 entries), so i_start = 10 is t = 207. Each function writes one
picture into ``out`` and returns caption records {"file", "caption", "settings"}. Anagrams and hybrids
(1.8, 1.9) are sampled the way ``fundiff anagram`` and ``fundiff hybrid`` sample by default (the model's
illusion defaults), so the rates the report's evaluation measures are the rates of what they show; their
records name those rates under "measured".
"""

from __future__ import annotations

from pathlib import Path

import torch

from fundiff import parta as ops
from fundiff.core.model import DiffusionModel
from fundiff.core.sampling import Sampling
from fundiff.evaluate.drawings import draw_digit, sklearn_digits
from fundiff.io.files import atomic_write
from fundiff.io.images import box_mask, load_image
from fundiff.io.pictures import save_gif, save_grid
from fundiff.partb.figures import _rec

TS = (75, 150, 225)
I_STARTS = (1, 3, 5, 7, 10, 20)
BLUR = (5, 1.0)
"""Gaussian blur for 1.2 at 28 px (the reports: kernel 5-7, sigma about 2 at 64 px)."""
SCALE = 4
spec = ops.spec_part_a
"""The report's Part A sections run the spec's strided loop (stride 9 of T = 300, CFG at every step)."""


def inputs(held_images: torch.Tensor, held_labels: torch.Tensor, out: Path) -> dict[str, tuple[torch.Tensor, int]]:
    """The section inputs: a held-out 7 (the test image), a held-out 3 and 5 ("two of one's own"), two
    pen drawings (written to PNG and loaded the documented way) and a digit of sklearn's 8x8 set (a "web"
    image from another source)."""
    def held(c: int) -> tuple[torch.Tensor, int]:
        return held_images[(held_labels == c).nonzero()[0, 0]][None], c

    found = {"test": held(7), "own1": held(3), "own2": held(5)}
    for name, digit, seed in (("drawn1", 2, 0), ("drawn2", 4, 1)):
        path, img = out / f"{name}.png", draw_digit(digit, seed)
        atomic_write(path, lambda p, img=img: img.save(p, format="PNG"))
        found[name] = (load_image(path, 28, 1, light_on_dark=True, fit=True), digit)
    sk_x, sk_y = sklearn_digits(1)
    found["web"] = (sk_x[9:10], int(sk_y[9]))
    return found


def _edits(model: DiffusionModel, x0: torch.Tensor, cond: int | None, guidance: float, seed: int) -> dict:
    return ops.edit(model, x0, cond, I_STARTS, guidance=guidance, seed=seed, sampling=spec(model))


def _grid(x: torch.Tensor, path: Path, nrow: int) -> Path:
    return save_grid(x.clamp(0, 1), path, nrow=nrow, scale=SCALE)


def class_to_image(model: DiffusionModel, out: Path, seed: int, guidance: float) -> list[dict]:
    """Part 0: one sample of each class with 10 and with 34 (stride 9) sampling steps, same noise."""
    rows = []
    for steps in (10, None):
        s = Sampling(steps=steps).over(spec(model))
        rows.append(torch.cat([ops.generate(model, c, 1, guidance=guidance, seed=seed + c, sampling=s)
                               for c in range(10)]))
    path = _grid(torch.cat(rows), out / "class_to_image.png", 10)
    return [_rec(path, f"Class to image (the digit model's 'text to image'): digits 0-9 with 10 sampling steps "
                 f"(top) and 34 strided steps (bottom), CFG gamma = {guidance:g}, seed {seed} + digit.",
                 steps=[10, 34], guidance=guidance, seed=seed)]


def forward(model: DiffusionModel, x0: torch.Tensor, out: Path, seed: int) -> list[dict]:
    """1.1: the test digit and x_t at t = 75, 150, 225."""
    noisy = ops.noise(model, x0, TS, seed)
    path = _grid(torch.cat([x0, *noisy]), out / "forward.png", 4)
    return [_rec(path, "Forward process: the test digit, then x_t at t = 75, 150, 225 of T = 300 (the reports' "
                 f"250, 500, 750 of 1000), seed {seed}.", t=list(TS), seed=seed)]


def denoising(model: DiffusionModel, x0: torch.Tensor, out: Path, seed: int) -> list[dict]:
    """1.2 (Gaussian blur) and 1.3 (one step, null class): one row per t."""
    res = [ops.denoise(model, x0, k, None, guidance=1.0, seed=seed, sampling=spec(model), blur=BLUR) for k in TS]
    blur = _grid(torch.cat([torch.cat([r["noisy"], r["blur"]]) for r in res]), out / "blur.png", 2)
    one = _grid(torch.cat([torch.cat([x0, r["noisy"], r["one_step"]]) for r in res]), out / "one_step.png", 3)
    return [_rec(blur, f"Classical denoising: x_t (left) and its Gaussian blur, kernel {BLUR[0]}, sigma {BLUR[1]:g} "
                 "(right), at t = 75, 150, 225 (rows).", t=list(TS), blur_kernel=BLUR[0], blur_sigma=BLUR[1],
                 seed=seed),
            _rec(one, "One-step denoising: original, x_t, and x0_hat from one UNet call with the null class "
                 "(rows t = 75, 150, 225).", t=list(TS), guidance=1.0, seed=seed)]


def iterative(model: DiffusionModel, x0: torch.Tensor, out: Path, seed: int, i_start: int = 10) -> list[dict]:
    """1.4: the strided loop from timesteps[i_start], every 5th step, and the three denoisers compared."""
    k = ops.timesteps(model, ops.settings(model, spec(model)))[i_start]
    r = ops.denoise(model, x0, k, None, guidance=1.0, seed=seed, sampling=spec(model), blur=BLUR)
    strip = _grid(r["strip"][:, 0], out / "iterative_strip.png", len(r["strip"]))
    cmp = _grid(torch.cat([x0, r["noisy"], r["iterative"], r["one_step"], r["blur"]]), out / "iterative_vs.png", 5)
    return [_rec(strip, f"Iterative denoising from i_start = {i_start} (t = {k}): x_t every 5th step of the strided "
                 "loop, down to the clean estimate.", i_start=i_start, t=k, stride=9, seed=seed),
            _rec(cmp, "Original, noisy, iteratively denoised, one-step denoised, Gaussian-blurred.", t=k, seed=seed)]


def sampling(model: DiffusionModel, out: Path, seed: int, n: int = 10) -> list[dict]:
    """1.5: samples from pure noise, null class, no guidance, with a GIF of the loop."""
    frames: list[torch.Tensor] = []
    x = ops.generate(model, None, n, guidance=1.0, seed=seed, sampling=spec(model),
                     callback=lambda d: frames.append(model.to_unit_range(d["x"].float().cpu()).clamp(0, 1)))
    path = _grid(x, out / "samples.png", n)
    gif = save_gif(frames, out / "samples.gif", nrow=n, scale=SCALE, duration_ms=120)
    return [_rec(path, f"{n} samples from pure noise with the null class and no guidance (34 strided steps).",
                 i_start=0, guidance=1.0, seed=seed),
            _rec(gif, "The same sampling loop, step by step.", seed=seed)]


def cfg(model: DiffusionModel, out: Path, seed: int, guidance: float) -> list[dict]:
    """1.6: digits 0-9 with CFG (bottom) against the conditional model alone (top), same noise."""
    rows = [torch.cat([ops.generate(model, c, 1, guidance=g, seed=seed + c, sampling=spec(model)) for c in range(10)])
            for g in (1.0, guidance)]
    path = _grid(torch.cat(rows), out / "cfg.png", 10)
    return [_rec(path, f"Classifier-free guidance: eps = eps_u + gamma (eps_c - eps_u). Top gamma = 1 (conditional "
                 f"only), bottom gamma = {guidance:g}; the same noise in each column.", guidance=[1.0, guidance],
                 seed=seed)]


def sdedit(model: DiffusionModel, images: dict[str, tuple[torch.Tensor, int]], names: list[str], out: Path,
           stem: str, seed: int, condition: str = "null", guidance: float = 1.0) -> list[dict]:
    """1.7, 1.7.1, 1.7.3: rows of edits from i_start in I_STARTS, then the input; condition "null", or
    "target:N" (edit toward digit N)."""
    cond = None if condition == "null" else int(condition.split(":")[1])
    rows = [torch.cat([*_edits(model, images[n][0], cond, guidance, seed).values(), images[n][0]])
            for n in names]
    path = _grid(torch.cat(rows), out / f"{stem}.png", len(I_STARTS) + 1)
    ts = ops.timesteps(model, ops.settings(model, spec(model)))
    what = "the null class" if cond is None else f"class {cond} (CFG gamma = {guidance:g})"
    return [_rec(path, f"SDEdit of {', '.join(names)} (rows) with {what}: i_start = "
                 f"{', '.join(map(str, I_STARTS))} (t = {', '.join(str(ts[i]) for i in I_STARTS)}), then the input.",
                 i_start=list(I_STARTS), t_start=[ts[i] for i in I_STARTS], condition=condition, guidance=guidance,
                 seed=seed)]


def inpainting(model: DiffusionModel, images: dict[str, tuple[torch.Tensor, int]], out: Path, seed: int,
               guidance: float) -> list[dict]:
    """1.7.2: RePaint of the top of the 7 and the centre of the others, each with its own class."""
    boxes = {"test": [0, 0, 28, 12], "own1": [8, 8, 20, 20], "own2": [0, 14, 28, 28]}
    rows = []
    for name, box in boxes.items():
        x0, c = images[name]
        m = box_mask(box, 28)
        rows.append(torch.cat([x0, m.expand_as(x0), x0 * (1 - m), ops.inpaint(model, x0, m, c, guidance=guidance,
                                                                                   seed=seed, sampling=spec(model))]))
    path = _grid(torch.cat(rows), out / "inpainting.png", 4)
    return [_rec(path, "Inpainting (RePaint): input, mask (white = new content), kept part, result; the top of the 7, "
                 f"the centre of the 3, the bottom of the 5, each with its own class, CFG gamma = {guidance:g}.",
                 boxes=boxes, guidance=guidance, seed=seed)]


ANAGRAMS = ((6, 9, "flip"), (1, 7, "flip"), (3, 8, "flip"), (0, 4, "rotate_90"))
HYBRIDS = ((0, 1), (8, 3), (4, 7))
TYPICAL = "typical results, not picked: {n} per pair from a fixed seed per pair (seed {seed} + the pair's index)"


def illusion_settings(model: DiffusionModel, hybrid: bool = False) -> Sampling:
    """What ``fundiff anagram`` (or ``fundiff hybrid``) samples with when given no settings."""
    return ops.settings(model, None, illusion=True, hybrid=hybrid)


def describe_sampling(s: Sampling) -> str:
    """"50 steps, posterior variance, CFG gamma = 10 at every noise level" (what the captions say)."""
    steps = f"{s.steps} steps" if s.steps else f"the strided loop (stride {s.stride})"
    sampler = f", {s.variance} variance" if s.variance else f", {s.sampler}"
    lo, hi = s.guidance_interval or (0.0, 1.0)
    where = "at every noise level" if (lo, hi) == (0.0, 1.0) else f"over noise levels {lo:g}-{hi:g}"
    classifier = f", classifier guidance s = {s.classifier_scale:g}" if s.classifier_scale else ""
    return f"{steps}{sampler}, CFG gamma = {s.guidance:g} {where}{classifier}"


def _sampling_settings(s: Sampling) -> dict:
    return {"steps": s.steps, "stride": s.stride, "variance": s.variance, "guidance": s.guidance,
            "classifier_scale": s.classifier_scale}


def anagrams(model: DiffusionModel, out: Path, seed: int, n: int = 2) -> list[dict]:
    """1.8: eps = (eps(x, a) + view^-1(eps(view(x), b))) / 2, sampled as ``fundiff anagram`` samples by default;
    rows of (upright, viewed) pairs. The record's "measured" names the evaluation's rates of these views (the
    page adds them to the caption)."""
    from fundiff.core.views import make_view

    cells = []
    for i, (a, b, view) in enumerate(ANAGRAMS):
        x = ops.anagram(model, [a, b], ["identity", view], n, seed=seed + i)
        cells += [torch.stack([x[j], make_view(view, 28).view(x)[j]]) for j in range(n)]
    path = _grid(torch.cat(cells), out / "anagrams.png", 2 * n)
    pairs = "; ".join(f"{a} upright / {b} {v.replace('_', ' ')}" for a, b, v in ANAGRAMS)
    s = illusion_settings(model)
    views = list(dict.fromkeys(v for _, _, v in ANAGRAMS))
    rec = _rec(path, f"Visual anagrams, each shown upright then under its view: {pairs}. Sampled as `fundiff "
               f"anagram` samples by default ({describe_sampling(s)}); {TYPICAL.format(n=n, seed=seed)}.",
               pairs=[list(p) for p in ANAGRAMS], seed=seed, **_sampling_settings(s))
    rec["measured"] = {"model": model.name, "what": "both readings at once",
                       "rates": [[f"anagram_{v}", "both", v.replace("_", " ")] for v in views]}
    return [rec]


def hybrids(model: DiffusionModel, out: Path, seed: int, n: int = 2) -> list[dict]:
    """1.9: eps = lowpass(eps(x, a)) + highpass(eps(x, b)), sampled as ``fundiff hybrid`` samples by default
    (its kernel and sigma too); each hybrid beside its far views: shrunk to a third and enlarged back, and its
    low-pass copy."""
    from fundiff.evaluate.parta import FAR_FACTOR, hybrid_kernel_sigma, shrink_far

    kernel, sigma = hybrid_kernel_sigma(model)
    cells = []
    for i, (a, b) in enumerate(HYBRIDS):
        x = ops.hybrid(model, [a, b], n, seed=seed + i)
        shrunk, low = shrink_far(x), ops.lowpass_view(x, kernel, sigma)
        cells += [torch.stack([x[j], shrunk[j], low[j]]) for j in range(n)]
    path = _grid(torch.cat(cells), out / "hybrids.png", 3 * n)
    pairs = "; ".join(f"{a} from far / {b} close up" for a, b in HYBRIDS)
    px = round(model.image_size / FAR_FACTOR)
    s = illusion_settings(model, hybrid=True)
    rec = _rec(path, f"Hybrid images, each beside how it looks from far: shrunk to {px} px and enlarged back, then "
               f"its low-pass copy (Gaussian kernel {kernel}, sigma {sigma:g}, the hybrid's own): {pairs}. Sampled "
               f"as `fundiff hybrid` samples by default ({describe_sampling(s)}); "
               f"{TYPICAL.format(n=n, seed=seed)}.", pairs=[list(p) for p in HYBRIDS], kernel=kernel, sigma=sigma,
               shrink_px=px, seed=seed, **_sampling_settings(s))
    rec["measured"] = {"model": model.name, "what": "read close up and from far at once",
                       "rates": [["hybrid", "both_shrunk", f"far = shrunk to {px} px"],
                                 ["hybrid", "both_lowpass", "far = the low-pass copy"]]}
    return [rec]
