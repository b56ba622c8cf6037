"""``fundiff evaluate-parta``: judge-measured success rates of Part A operations on a digit model."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from fundiff import parta as ops
from fundiff.errors import UserError
from fundiff.evaluate import parta
from fundiff.evaluate.drawings import draw_digit, sklearn_digits
from fundiff.evaluate.runs import judge_for
from fundiff.io.files import atomic_write, pick_device, versions, write_json
from fundiff.io.guard import prepare_output
from fundiff.io.images import load_image
from fundiff.io.pictures import save_grid
from fundiff.models import load_diffusion_model
from fundiff.progress import say
from fundiff.train.data import load_digits, split_holdout


def _drawn(directory: Path, seeds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stroke drawings written as PNGs and loaded back the documented way (invert, MNIST framing)."""
    images, labels = [], []
    for seed in range(seeds):
        for d in range(10):
            path = directory / f"drawn_{d}_s{seed}.png"
            img = draw_digit(d, seed)
            atomic_write(path, lambda p, img=img: img.save(p, format="PNG"))
            images.append(load_image(path, 28, 1, light_on_dark=True, fit=True))
            labels.append(d)
    return torch.cat(images), torch.tensor(labels)


def run_evaluate_parta(model_name: str, out: Path, pairs: int, per_pair: int, per_target: int,
                       hybrid_sigma: float, hybrid_kernel: int, guidance: float | None, seed: int,
                       force: bool, device: str) -> dict:
    model = load_diffusion_model(model_name, pick_device(device))
    if model.conditioning != "class" or model.image_size != 28 or model.channels != 1:
        raise UserError(f"evaluate-parta needs a class-conditioned 28x28 digit model; {model_name} is not one")
    out = prepare_output(out, force)
    data = model.info.get("recipe", {}).get("data", "mnist")
    digits = load_digits(data)
    judge, judge_info, _ = judge_for(data, digits.source, None)
    held = split_holdout(digits, model.info["recipe"]["holdout_per_class"])[1]
    s = ops.spec_part_a(model)
    ts = ops.timesteps(model, ops.settings(model, s))
    quarter = len(ts) // 4
    t0, res = time.perf_counter(), {}
    cp = parta.class_pairs(pairs, seed)
    say(f"class-conditional SDEdit from i_start {quarter} (t = {ts[quarter]})")
    res["edit"] = parta.edit_rate(model, judge, held, quarter, per_target, guidance, seed, s)
    for view in ("flip", "rotate_90"):
        say(f"anagrams, view {view}: {len(cp)} pairs x {per_pair}")
        res[f"anagram_{view}"] = parta.anagram_rate(model, judge, view, cp, per_pair, guidance, seed, s)
    say(f"hybrids: {len(cp)} pairs x {per_pair}, kernel {hybrid_kernel}, sigma {hybrid_sigma}")
    res["hybrid"] = parta.hybrid_rate(model, judge, cp, per_pair, hybrid_kernel, hybrid_sigma, guidance, seed, s)
    i_starts = [len(ts) - 10, len(ts) - 6, len(ts) - 3]  # light noise: t = 81, 45, 18 of T = 300
    say(f"drawings: SDEdit from i_start {i_starts}")
    drawn_x, drawn_y = _drawn(out / "drawings", 3)
    res["drawn"] = parta.drawings_rate(model, judge, drawn_x, drawn_y, i_starts, seed, s)
    sk_x, sk_y = sklearn_digits(20)
    res["sklearn_8x8"] = parta.drawings_rate(model, judge, sk_x, sk_y, i_starts, seed, s)
    for name, r in res.items():
        save_grid(r.pop("examples"), out / f"{name}.png", nrow=_nrow(name))
    result = {"model": model.describe(), "timesteps": len(ts), "judge": judge_info, "seed": seed,
              "guidance": guidance if guidance is not None else model.default_guidance, "results": res,
              "seconds": round(time.perf_counter() - t0, 1), "versions": versions()}
    result["model"].pop("card", None)
    write_json(out / "parta_eval.json", result)
    _echo(res)
    return result


def _nrow(name: str) -> int:
    return {"edit": 4, "drawn": 10, "sklearn_8x8": 10}.get(name, 2)


def _echo(res: dict) -> None:
    e = res["edit"]
    say(f"edit to target class (i_start {e['i_start']}): {e['rate']:.3f} of {e['edits']}")
    for v in ("flip", "rotate_90"):
        a = res[f"anagram_{v}"]
        say(f"anagram {v}: upright {a['upright']:.3f}, viewed {a['viewed']:.3f}, both {a['both']:.3f}")
    h = res["hybrid"]
    say(f"hybrid: low on blurred {h['low_on_blurred']:.3f}, high on image {h['high_on_image']:.3f}, "
               f"both {h['both']:.3f}")
    for k in ("drawn", "sklearn_8x8"):
        d = res[k]
        after = ", ".join(f"i_start {i}: {v['accuracy']:.3f}" for i, v in d["edited"].items())
        say(f"{k}: raw {d['raw_accuracy']:.3f}; after SDEdit {after}")
