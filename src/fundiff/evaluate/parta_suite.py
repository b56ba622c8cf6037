"""``fundiff evaluate-parta``: judge-measured success rates of Part A operations, each with a 95% confidence
interval, on one or more class-conditioned 28x28 models with 10 classes (default: every shipped model that
is installed).

Anagrams (flip, rotate_90, rotate_180, transpose; a three-view identity/rotate_90/rotate_180) and hybrids are
sampled exactly as ``fundiff anagram`` / ``fundiff hybrid`` sample by default, over all 90 ordered class pairs
(or a seeded subset); class edits and drawings use the spec's Part A loop. One ``parta_eval.json`` holds
``results[MODEL]``; pictures go to ``OUT/MODEL/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from fundiff import parta as ops
from fundiff.core.model import DiffusionModel
from fundiff.errors import UserError
from fundiff.evaluate import parta
from fundiff.evaluate.drawings import draw_digit, sklearn_digits
from fundiff.evaluate.judge import shrunk_accuracy
from fundiff.evaluate.runs import judge_for
from fundiff.io.files import atomic_write, pick_device, versions, write_json
from fundiff.io.guard import prepare_output
from fundiff.io.images import load_image
from fundiff.io.pictures import save_grid
from fundiff.models import SHIPPED, load_diffusion_model, shipped_path
from fundiff.progress import say
from fundiff.train.data import load_digits, split_holdout
from fundiff.train.recipes import Recipe

DIGIT_DATA = ("mnist",)
"""Data sets whose classes are the digits 0-9: only their models are scored on drawn and sklearn digits."""


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


def default_models() -> list[str]:
    """The shipped models that are installed (``fundiff.models.SHIPPED`` whose file exists)."""
    return [name for name in SHIPPED if shipped_path(name).is_file()]


def check_model(model: DiffusionModel, spec: str) -> DiffusionModel:
    """A class-conditioned model of 28x28 one-channel images with 10 classes, or one UserError line."""
    if (model.conditioning, model.num_classes, model.image_size, model.channels) != ("class", 10, 28, 1):
        raise UserError(f"evaluate-parta needs a class-conditioned model of 28x28 one-channel images with 10 "
                        f"classes; {spec} is not one ({model.conditioning}-conditioned, {model.num_classes} classes, "
                        f"{model.image_size} px, {model.channels} channel(s))")
    return model


def model_key(spec: str, taken: Sequence[str] = ()) -> str:
    """The name a model's results go under (and its picture folder): a shipped name as it is, else the run
    folder's or weights file's name, made safe for a folder and unique among ``taken``."""
    name = spec if spec in SHIPPED else Path(spec).expanduser().name.removesuffix(".safetensors")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    key, i = base, 2
    while key in taken:
        key, i = f"{base}-{i}", i + 1
    return key


def _data(model: DiffusionModel) -> str:
    return model.info.get("recipe", {}).get("data", "mnist")


def evaluate_model(model: DiffusionModel, folder: Path, pairs: int | None = None, per_pair: int = 4,
                   per_target: int = 20, guidance: float | None = None, seed: int = 0,
                   hybrid_kernel: int | None = None, hybrid_sigma: float | None = None) -> tuple[dict, dict]:
    """Every measurement on one model, pictures into ``folder``: (results, facts about the run)."""
    data = _data(model)
    digits = load_digits(data)
    judge, judge_info, _ = judge_for(data, digits.source, None)
    far_judge, far_info, _ = judge_for(data, digits.source, None, far=True)
    holdout = model.info.get("recipe", {}).get("holdout_per_class", Recipe.holdout_per_class)
    held = split_holdout(digits, holdout)[1]
    s = ops.spec_part_a(model)
    ts = ops.timesteps(model, ops.settings(model, s))
    quarter = len(ts) // 4
    cp = parta.class_pairs(pairs, seed)
    triples = parta.class_triples(len(cp), seed)
    t0, res = time.perf_counter(), {}
    say(f"{model.name}: class-conditional SDEdit from i_start {quarter} (t = {ts[quarter]})")
    res["edit"] = parta.edit_rate(model, judge, held, quarter, per_target, guidance, seed, s)
    for view in parta.ANAGRAM_VIEWS:
        say(f"{model.name}: anagrams, view {view}: {len(cp)} pairs x {per_pair}")
        res[f"anagram_{view}"] = parta.anagram_rate(model, judge, view, cp, per_pair, guidance, seed)
    say(f"{model.name}: anagrams, views {', '.join(parta.THREE_VIEWS)}: {len(triples)} triples x {per_pair}")
    res["anagram_3view"] = parta.anagram3_rate(model, judge, triples, per_pair, guidance, seed)
    say(f"{model.name}: hybrids: {len(cp)} pairs x {per_pair}")
    res["hybrid"] = parta.hybrid_rate(model, judge, cp, per_pair, hybrid_kernel, hybrid_sigma, guidance, seed,
                                      far_judge=far_judge)
    if data in DIGIT_DATA:
        i_starts = [len(ts) - 10, len(ts) - 6, len(ts) - 3]  # light noise: t = 81, 45, 18 of T = 300
        say(f"{model.name}: drawings: SDEdit from i_start {i_starts}")
        drawn_x, drawn_y = _drawn(folder / "drawings", 3)
        res["drawn"] = parta.drawings_rate(model, judge, drawn_x, drawn_y, i_starts, seed, s)
        sk_x, sk_y = sklearn_digits(20)
        res["sklearn_8x8"] = parta.drawings_rate(model, judge, sk_x, sk_y, i_starts, seed, s)
    else:
        say(f"{model.name}: drawings skipped: they are digits, the model draws {data}")
    for name, r in res.items():
        save_grid(r.pop("examples"), folder / f"{name}.png", nrow=_nrow(name))
    facts = {"model": {k: v for k, v in model.describe().items() if k != "card"}, "data": data,
             "classes": list(model.class_names) or [str(c) for c in range(10)], "judge": judge_info,
             "far_judge": {**far_info, "judge_held_out_shrunk_accuracy": shrunk_accuracy(judge, held)},
             "sampling": ops.settings(model, None, guidance, illusion=True).to_dict(),
             "hybrid_sampling": ops.settings(model, None, guidance, hybrid=True).to_dict(),
             "part_a_sampling": s.to_dict(),
             "timesteps": len(ts), "seconds": round(time.perf_counter() - t0, 1)}
    return res, facts


def run_evaluate_models(models: Sequence[str] | None, out: Path, pairs: int | None = None, per_pair: int = 4,
                        per_target: int = 20, guidance: float | None = None, seed: int = 0, force: bool = False,
                        device: str = "auto") -> dict:
    """``fundiff evaluate-parta``: every measurement on each model (default: :func:`default_models`); writes
    ``OUT/parta_eval.json`` (``results[MODEL]``, ``models[MODEL]``) and pictures into ``OUT/MODEL/``."""
    specs = list(dict.fromkeys(models or default_models()))
    if not specs:
        raise UserError("no shipped model is installed; name one with --model")
    loaded: dict[str, DiffusionModel] = {}
    for spec in specs:
        loaded[model_key(spec, list(loaded))] = check_model(load_diffusion_model(spec, pick_device(device)), spec)
    out = prepare_output(out, force)
    t0 = time.perf_counter()
    results, facts = {}, {}
    for key, model in loaded.items():
        results[key], facts[key] = evaluate_model(model, out / key, pairs, per_pair, per_target, guidance, seed)
    n_pairs = len(parta.class_pairs(pairs, seed))
    result = {"models": facts, "pairs": n_pairs, "triples": n_pairs, "per_pair": per_pair, "per_target": per_target,
              "seed": seed, "guidance": guidance, "chunk": parta.CHUNK, "results": results,
              "seconds": round(time.perf_counter() - t0, 1), "versions": versions()}
    write_json(out / "parta_eval.json", result)
    for key, res in results.items():
        for line in summary_lines(key, res):
            say(line)
    return result


def run_evaluate_parta(model_name: str, out: Path, pairs: int | None = None, per_pair: int = 4, per_target: int = 20,
                       hybrid_sigma: float | None = None, hybrid_kernel: int | None = None,
                       guidance: float | None = None, seed: int = 0, force: bool = False,
                       device: str = "auto") -> dict:
    """One model, pictures straight into ``out``, in the layout ``fundiff.report`` reads: ``results`` holds
    plain rates (anagram upright / viewed / both; hybrid low_on_blurred / high_on_image / both, the low-pass
    reading) and ``measured`` the full records of :func:`run_evaluate_models` (with hits and ci95).
    ``hybrid_sigma`` / ``hybrid_kernel`` override the hybrid's defaults when given."""
    model = check_model(load_diffusion_model(model_name, pick_device(device)), model_name)
    out = prepare_output(out, force)
    res, facts = evaluate_model(model, out, pairs, per_pair, per_target, guidance, seed, hybrid_kernel, hybrid_sigma)
    result = {"model": facts["model"], "timesteps": facts["timesteps"], "judge": facts["judge"],
              "far_judge": facts["far_judge"], "seed": seed,
              "guidance": guidance if guidance is not None else model.default_guidance,
              "results": legacy_results(res), "measured": res, "seconds": facts["seconds"], "versions": versions()}
    write_json(out / "parta_eval.json", result)
    for line in summary_lines(model_name, res):
        say(line)
    return result


def legacy_results(res: dict) -> dict:
    """The records with each rate as a plain number, and the keys the report reads."""
    flat = {}
    for name, r in res.items():
        f = {k: v["rate"] if isinstance(v, dict) and "ci95" in v else v for k, v in r.items()}
        if name.startswith("anagram_") and "viewed" in f:
            f.update(view=r["views"][1], per_pair=r["images_per_pair"])
        if name == "hybrid":
            f.update(low_on_blurred=f["far_lowpass"], high_on_image=f["near"], both=f["both_lowpass"],
                     per_pair=r["images_per_pair"])
        flat[name] = f
    return flat


def _nrow(name: str) -> int:
    if name in ("anagram_3view", "hybrid"):
        return 3
    return {"edit": 4, "drawn": 10, "sklearn_8x8": 10}.get(name, 2)


def _ci(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{r['rate']:.3f} (95% CI {lo:.3f}-{hi:.3f}, {r['images']} images)"


def summary_lines(key: str, res: dict) -> list[str]:
    """One line per rate: the rate, its 95% interval and the number of images."""
    e = res["edit"]
    lines = [f"{key}: edit to target class (i_start {e['i_start']}): {_ci(e)}"]
    for view in parta.ANAGRAM_VIEWS:
        a = res[f"anagram_{view}"]
        lines += [f"{key}: anagram {view}, {what}: {_ci(a[what])}" for what in ("upright", "viewed", "both")]
    a3 = res["anagram_3view"]
    lines += [f"{key}: anagram 3 views, {what}: {_ci(a3[what])}" for what in (*a3["views"], "all")]
    h = res["hybrid"]
    lines += [f"{key}: hybrid (kernel {h['kernel']}, sigma {h['sigma']:g}), {label}: {_ci(h[what])}"
              for what, label in (("near", "near reads high"), ("far_shrunk", f"shrunk to {h['shrink_px']} px reads "
                                  "low"), ("far_lowpass", "low-pass reads low"), ("both_shrunk", "near & shrunk "
                                  "(headline)"), ("both_lowpass", "near & low-pass"))]
    for k in ("drawn", "sklearn_8x8"):
        if k in res:
            d = res[k]
            after = ", ".join(f"i_start {i}: {v['accuracy']:.3f}" for i, v in d["edited"].items())
            lines.append(f"{key}: {k}: raw {d['raw_accuracy']:.3f}; after SDEdit {after}")
    return lines
