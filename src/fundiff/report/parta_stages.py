"""Part A stages of the report: each section on the shipped digit model, the judge-measured rates of every
shipped model that is installed, and the whole Part A deliverable set on DeepFloyd IF when it is given and
loads."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from fundiff.errors import UserError
from fundiff.report import parta_digits as pd
from fundiff.report.profiles import Profile
from fundiff.report.runner import Stage

DIGITS = "digits"
PHOTOS = ("rocket", "astronaut", "chelsea", "coffee")


ILLUSIONS = ("1.8", "1.9")
"""Sections sampled with the model's illusion defaults (what ``fundiff anagram`` / ``hybrid`` use)."""


def _model(device: str, name: str = DIGITS):
    return _load(device, name)


@functools.cache
def _load(device: str, name: str):
    from fundiff.io.files import pick_device
    from fundiff.models import load_diffusion_model

    return load_diffusion_model(name, pick_device(device))


def _illusion_defaults(device: str, name: str = DIGITS) -> dict:
    """The model's illusion sampling defaults (anagrams', and hybrids' where they differ), in a stage's config:
    other defaults draw (and measure) again."""
    model = _model(device, name)
    anagrams, hybrids = (pd.illusion_settings(model, hybrid).to_dict() for hybrid in (False, True))
    return anagrams if hybrids == anagrams else {**anagrams, "hybrids": hybrids}


def evaluated_models(p: Profile) -> list[str]:
    """The models the evaluation stage measures: the profile's, else every shipped model that is installed."""
    from fundiff.evaluate.parta_suite import default_models

    return [m for m in default_models() if p.parta_models is None or m in p.parta_models]


def _inputs(out: Path, device: str) -> dict:
    from fundiff.train.data import load_digits, split_holdout

    model = _model(device)
    held = split_holdout(load_digits(model.info["recipe"]["data"]), model.info["recipe"]["holdout_per_class"])[1]
    return pd.inputs(held.images, held.labels, out)


def _section(fn, needs_inputs: bool, device: str, **kw):
    """A stage function: the model (and the inputs) in, the section's records out."""
    def run(out: Path) -> dict:
        out.mkdir(parents=True, exist_ok=True)
        args = (_model(device), _inputs(out, device)) if needs_inputs else (_model(device),)
        return {"figures": fn(*args, out=out, **kw)}
    return run


def _first(fn):
    """Adapt a function of one input image (the test digit) to the inputs dict."""
    def run(model, images, out, **kw):
        return fn(model, images["test"][0], out, **kw)
    return run


def digit_stages(root: Path, p: Profile, seed: int, device: str) -> list[Stage]:
    """One stage per Part A section (0, 1.1-1.9) on the shipped digit model, then the evaluation of every shipped
    model that is installed (the stage reruns when that list or their illusion defaults change)."""
    g = 5.0
    specs = [
        ("0", "class to image", _section(pd.class_to_image, False, device, seed=seed, guidance=g)),
        ("1.1", "forward process", _section(_first(pd.forward), True, device, seed=seed)),
        ("1.2-1.3", "blur and one-step denoising", _section(_first(pd.denoising), True, device, seed=seed)),
        ("1.4", "iterative denoising", _section(_first(pd.iterative), True, device, seed=seed)),
        ("1.5", "sampling", _section(pd.sampling, False, device, seed=seed)),
        ("1.6", "classifier-free guidance", _section(pd.cfg, False, device, seed=seed, guidance=g)),
        ("1.7", "SDEdit", _section(pd.sdedit, True, device, names=["test", "own1", "own2"], stem="sdedit",
                                   seed=seed)),
        ("1.7.1", "SDEdit of drawings and a web image",
         _section(pd.sdedit, True, device, names=["drawn1", "drawn2", "web"], stem="drawn", seed=seed)),
        ("1.7.2", "inpainting", _section(pd.inpainting, True, device, seed=seed, guidance=g)),
        ("1.7.3", "class-conditional SDEdit",
         _section(pd.sdedit, True, device, names=["test", "own1", "own2"], stem="to_class_8", seed=seed,
                  condition="target:8", guidance=g)),
        ("1.8", "visual anagrams", _section(pd.anagrams, False, device, seed=seed)),
        ("1.9", "hybrid images", _section(pd.hybrids, False, device, seed=seed)),
    ]
    stages = [Stage(f"parta/{sec}", f"Part A {sec} on the digit model: {title}", _config(sec, seed, device), fn,
                    root / sec)
              for sec, title, fn in specs if p.parta_sections is None or sec in p.parta_sections]
    if not p.parta_evaluate:
        return stages
    models = evaluated_models(p)
    cfg = {"models": models, "seed": seed, "pairs": p.parta_pairs, "per_pair": p.parta_per_pair,
           "per_target": p.parta_per_target, "illusion_sampling": {m: _illusion_defaults(device, m) for m in models}}
    stages.append(Stage("parta/evaluate", f"Part A measured on {', '.join(models)}: class edits, anagrams, hybrids, "
                        "drawings (judge)", cfg,
                        functools.partial(_evaluate, models=models, p=p, seed=seed, device=device), root / "evaluate"))
    return stages


def _config(sec: str, seed: int, device: str) -> dict:
    cfg = {"model": DIGITS, "seed": seed, "section": sec}
    return {**cfg, "sampling": _illusion_defaults(device)} if sec in ILLUSIONS else cfg


def _evaluate(out: Path, models: list[str], p: Profile, seed: int, device: str) -> dict:
    """``fundiff evaluate-parta`` on each model with the profile's sizes and the commands' defaults: the full
    records (rate, hits, images, ci95) under ``results[MODEL]``, pictures in ``out/MODEL/``."""
    from fundiff.evaluate.parta_suite import run_evaluate_models

    res = run_evaluate_models(models, out, p.parta_pairs, p.parta_per_pair, p.parta_per_target, None, seed, True,
                              device)
    res.pop("versions", None)
    return res


@dataclass(frozen=True)
class DeepFloydPlan:
    """How much of Part A runs on DeepFloyd IF: the assignment's settings, smaller in the smoke profile."""

    steps_1: tuple[int, ...] = (20, 50)
    stride: int = 30
    n: int = 5
    steps_2: int | None = None


def deepfloyd_plan(p: Profile) -> DeepFloydPlan:
    return DeepFloydPlan((2,), 45, 1, 2) if p.name in ("smoke", "tiny") else DeepFloydPlan()


def photo(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("fundiff") / "assets" / "photos" / f"{name}.jpg"))


def deepfloyd_stage(out: Path, p: Profile, model: str, stage_2: str | None, cache: Path | None,
                    device: str) -> Stage:
    plan = deepfloyd_plan(p)
    cfg = {"model": model, "stage_2": stage_2, "plan": plan.__dict__, "seed": 180}
    return Stage("deepfloyd", f"Part A on DeepFloyd IF ({model})", cfg,
                 functools.partial(_deepfloyd, model=model, stage_2=stage_2, cache=cache, plan=plan, device=device),
                 out, keep_partial=True)


def _deepfloyd(out: Path, model: str, stage_2: str | None, cache: Path | None, plan: DeepFloydPlan,
               device: str) -> dict:
    """``fundiff parta`` (resumable) on the shipped photos and two pen drawings; a model that does not load
    (no weights, no licence, no token) makes the section say so instead of stopping the report."""
    from fundiff.evaluate.drawings import draw_digit
    from fundiff.io.files import atomic_write
    from fundiff.results.deliverables import PartABase, run_parta
    from fundiff.results.settings import ModelSpec, StageTwo

    drawings = []
    for digit, seed in ((2, 0), (4, 1)):
        path, img = out / "inputs" / f"drawn_{digit}.png", draw_digit(digit, seed)
        atomic_write(path, lambda q, img=img: img.save(q, format="PNG"))
        drawings.append(path)
    base = PartABase(ModelSpec(model, device, cache), 180, StageTwo(True, stage_2, plan.steps_2), plan.stride)
    try:
        run_parta(photo("rocket"), [photo("astronaut"), photo("chelsea")], photo("coffee"), drawings, out, base,
                  list(plan.steps_1), plan.n)
    except UserError as e:
        return {"status": "failed", "reason": str(e)}
    return {"status": "done", "parta": json.loads((out / "parta.json").read_text())}
