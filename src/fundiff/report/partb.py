"""Part B stages of the report: train a run (resuming a partial one), draw its figures, score it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fundiff.core.sampling import Sampling
from fundiff.evaluate.runs import SHIPPED_JUDGES, judge_for, run_evaluate
from fundiff.partb.all_figures import run_figures
from fundiff.report.profiles import RunSpec
from fundiff.train.checkpoint import RUN_FILE, read_run
from fundiff.train.data import load_digits
from fundiff.train.loop import read_losses
from fundiff.train.session import run_train


def train(spec: RunSpec, data: str, data_dir: Path | None, out: Path, device: str) -> dict:
    """``fundiff train`` into ``out``; a run interrupted before continues from its last finished epoch."""
    info = read_run(out) if (out / RUN_FILE).is_file() else None
    if info is None and out.exists():
        shutil.rmtree(out)  # killed before its first checkpoint: nothing to keep
    # even a run whose run.json says "done" resumes: the stage did not finish, and a kill may have come between the
    # last epoch's checkpoint and its pictures (resuming redraws them; no epoch is trained again)
    overrides = {k: v for k, v in spec.overrides}
    run_train(spec.model, spec.objective, spec.recipe, {**overrides, "data": data}, data_dir, None, out,
              info is not None, device, explain_os_errors=False)  # the report says what to do: run it again
    return summary(out, read_run(out))


def summary(run_dir: Path, info: dict) -> dict:
    """What the page shows of a run: recipe, epochs, training time, first and last losses."""
    rows = read_losses(run_dir)
    hist = info["history"]
    return {"run": str(run_dir), "recipe": info["recipe"], "epoch": info["epoch"], "steps": info["step"],
            "train_seconds": round(sum(h["seconds"] for h in hist), 1), "first_loss": rows[0][2] if rows else None,
            "epoch_losses": [round(h["mean_loss"], 5) for h in hist], "data": info["data"],
            "device": info["device"], "versions": info["versions"]}


def figures(run_dir: Path, out: Path, seed: int, device: str) -> dict:
    """``fundiff figures RUN``: its records (file, caption, settings) with files relative to the report."""
    run_figures([run_dir], out, None, None, seed, device, force=True)
    return json.loads((out / "figures.json").read_text())


def evaluate(run_dir: Path, per_class: int, steps: int | None, seed: int, device: str) -> dict:
    """``fundiff evaluate RUN``: judge accuracy and Frechet distance of the last epoch's samples, by the judge of
    the run's data (:func:`fundiff.evaluate.runs.judge_for`, as the judge stage resolved it)."""
    recipe = read_run(run_dir)["recipe"]
    if recipe["objective"] != "flow":
        steps = None
    # force: a stage that was killed half-way may have left part of its folder; evaluate again over it
    res = run_evaluate(run_dir, per_class, sampling=Sampling(steps=steps), seed=seed, device=device,
                       force=True)
    res.pop("judge", None)
    return res


def judge(data: str, data_dir: Path | None) -> dict:
    """The judge of the data set: the shipped one of the offline digits or Fashion-MNIST, else trained once into the
    user's cache (about 30 s for 4,500 digits)."""
    _, info, path = judge_for(data, load_digits(data, data_dir).source, None, data_dir)
    return {"path": str(path), "shipped": path.parent == SHIPPED_JUDGES,
            **{k: v for k, v in info.items() if k != "versions"}}
