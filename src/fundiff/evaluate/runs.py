"""Scoring a class-conditioned run (judge accuracy, Frechet distance) and the judge it is scored with."""

from __future__ import annotations

import hashlib
import json
import os
import time
from importlib import resources
from pathlib import Path

from fundiff import parta
from fundiff.core.sampling import Sampling
from fundiff.errors import UserError
from fundiff.evaluate.judge import judge_record, load_judge, save_judge, train_judge
from fundiff.evaluate.metrics import accuracy_table, class_shares, frechet_report
from fundiff.io.files import versions, write_json
from fundiff.io.guard import prepare_file, prepare_output
from fundiff.io.pictures import save_grid
from fundiff.models import load
from fundiff.partb.samples import check_grid, sample_grid, save_npz, settings_name
from fundiff.progress import say
from fundiff.train.checkpoint import read_run
from fundiff.train.data import FOLDER, folder_or_name, load_data, split_holdout
from fundiff.train.recipes import Recipe


def default_judge_path(data: str, data_dir: Path | None = None, far: bool = False, shape: tuple = ()) -> Path:
    """The judge in the user's cache: one per data set, one per --data-dir (its images differ) and, for an image
    folder, per image size and channels (``shape``); a far judge (``-far``, which also reads digits seen from far)
    beside each."""
    root = Path(os.environ.get("FUNDIFF_CACHE", Path.home() / ".cache" / "fundiff"))
    kind = "-far" if far else ""
    if data_dir is None:
        return root / f"judge-{data}{kind}.safetensors"
    key = str(Path(data_dir).resolve()) + ("".join(f":{v}" for v in shape) if shape else "")
    tag = hashlib.sha1(key.encode()).hexdigest()[:8]
    return root / f"judge-{data}-{tag}{kind}.safetensors"


SHIPPED_JUDGES = Path(str(resources.files("fundiff") / "assets" / "judges"))
"""fundiff's own judges of the data sets it ships models for (``python tools/ship_judges.py``)."""


def shipped_judge(data: str, data_source: str, data_dir: Path | None = None, far: bool = False) -> Path | None:
    """The judge fundiff ships for this data (the offline digits, Fashion-MNIST), if it was trained on exactly this
    data: every machine then measures with the same instrument (one trained here depends on the thread count: the
    digit judge read 0.988 of the held-out digits trained on one thread, 0.990 on two); None for other data."""
    if data_dir is not None:
        return None
    path = SHIPPED_JUDGES / f"judge-{data}{'-far' if far else ''}.safetensors"
    return path if path.is_file() and judge_record(path).get("data") == data_source else None


JUDGE_IMAGES = 36_000
"""A judge trained without --epochs sees about this many images: 8 epochs of the 4,450 offline digits (held-out
accuracy about 0.99), 1 of full MNIST or Fashion-MNIST (60,000)."""


def judge_epochs(train_images: int) -> int:
    """The default judge epochs: about :data:`JUDGE_IMAGES` images, 1 to 8 epochs."""
    return max(1, min(8, round(JUDGE_IMAGES / max(1, train_images))))


def run_judge_train(data: str, data_dir: Path | None, epochs: int | None, out: Path | None, force: bool,
                    far: bool = False, image_size: int | None = None, channels: int | None = None,
                    holdout_per_class: int = 50) -> Path:
    """Train the judge of a data set (``data`` a name, or an image folder at ``image_size`` and ``channels``, by
    default the images' own) on its training split and write it to ``out`` (default: the user's cache)."""
    if epochs is not None and not 1 <= epochs <= 1000:
        raise UserError(f"--epochs {epochs} is out of range (1 to 1000; 8 reach about 0.99 on the offline digits)")
    data, data_dir = folder_or_name(data, data_dir)
    digits = load_data(data, data_dir, None, image_size, channels)
    shape = (digits.image_size, digits.channels) if data == FOLDER else ()
    out = prepare_file(Path(out) if out is not None else default_judge_path(data, data_dir, far, shape), force)
    train, held = split_holdout(digits, holdout_per_class)
    epochs = judge_epochs(len(train)) if epochs is None else epochs
    net, info = train_judge(train, held, epochs, far=far)
    info.update(data=digits.source, dataset=data)
    save_judge(out, net, info)
    shrunk = f", {info['held_out_shrunk_accuracy']:.4f} shrunk to 9 px" if far else ""
    say(f"{'far ' if far else ''}judge: held-out accuracy {info['held_out_accuracy']:.4f}{shrunk} on {len(held)} "
        f"held-out images ({info['seconds']} s) -> {out}")
    shipped = shipped_judge(data, digits.source, data_dir, far)
    if shipped is not None and out != shipped:
        say(f"evaluate measures this data with fundiff's shipped judge ({shipped.name}); pass --judge {out} to "
            "measure with this one")
    return out


def judge_for(data: str, data_source: str, judge: Path | None, data_dir: Path | None = None, far: bool = False,
              recipe: Recipe | None = None):
    """The judge ``judge``, else the shipped one of the data (:func:`shipped_judge`), else the cached one (the far
    one if ``far``; trained on ``data_dir`` first if missing; for an image folder at the ``recipe``'s image size and
    channels)."""
    shape = (recipe.image_size, recipe.channels) if recipe is not None and data == FOLDER else ()
    path = Path(judge) if judge is not None else (shipped_judge(data, data_source, data_dir, far)
                                                  or default_judge_path(data, data_dir, far, shape))
    if judge is None and not path.exists():
        say(f"no {'far ' if far else ''}judge at {path}: training one (a minute or two)")
        size, channels = shape or (None, None)
        run_judge_train(data, data_dir, None, path, False, far, size, channels,
                        recipe.holdout_per_class if recipe is not None else 50)
    net, info = load_judge(path)
    if info.get("data") != data_source:
        raise UserError(f"judge {path} was trained on {info.get('data')!r}, the run on {data_source!r}; pass "
                        "--judge with a judge of the run's data, or leave --judge out to train one")
    return net, info, path


def run_evaluate(run_dir: Path, per_class: int = 40, epoch: int | None = None, precision: str | None = None,
                 judge: Path | None = None, sampling: Sampling | None = None, seed: int = 0,
                 device: str = "auto", force: bool = False) -> dict:
    """Sample ``per_class`` of each class with the run's card (``sampling`` overrides; a time model: as many images
    unconditioned), score them with the judge of the run's data, and write samples.png, samples.npz and eval.json
    into RUN/eval-<settings>; returns the record.

    An evaluation already made with the same settings is read back, not redone, unless ``force``."""
    info = read_run(run_dir)
    model = load(run_dir, device, epoch=epoch, precision=precision)
    recipe = Recipe.from_dict(model.info["recipe"])
    if recipe.model == "denoiser":
        raise UserError(f"evaluate needs a time or class model; {run_dir} is a single-step denoiser")
    sampling = parta.settings(model, sampling)
    out = Path(run_dir) / settings_name("eval", model.info["epoch"], model, sampling, seed, recipe.precision)
    if (out / "eval.json").is_file() and not force:
        say(f"{out}/eval.json is already there (same settings); pass --force to evaluate again")
        return _report(json.loads((out / "eval.json").read_text()), out)
    classes = list(range(recipe.num_classes)) if recipe.model == "class" else None
    check_grid(model, classes, per_class, sampling)
    prepare_output(out, force)
    data_dir = _data_dir(info)
    folder = recipe.data == FOLDER
    digits = load_data(recipe.data, data_dir, None, recipe.image_size if folder else None,
                       recipe.channels if folder else None)
    train, held = split_holdout(digits, recipe.holdout_per_class)
    if digits.source != info["data"]["source"] and not _same_folder(info["data"], len(train), len(held)):
        raise UserError(f"the run was trained on {info['data']['source']}, but {digits.source} is what loads now")
    judge_net, judge_info, judge_path = judge_for(recipe.data, digits.source, judge, data_dir, recipe=recipe)
    t0 = time.perf_counter()
    x, labels = sample_grid(model, classes, per_class, seed, sampling, progress="evaluate")
    seconds = time.perf_counter() - t0
    ep = model.info["epoch"]
    judged = {"accuracy": accuracy_table(judge_net, x, labels)} if labels is not None else \
        {"class_shares": class_shares(judge_net, x, recipe.num_classes)}
    result = {
        "run": str(run_dir), "epoch": ep, "model": recipe.model, "sampler": sampling.sampler,
        "steps": len(sampling.timesteps(model.schedule.T)), "guidance": sampling.guidance, "seed": seed,
        "per_class": per_class, "clip_x0": sampling.clip, "precision": recipe.precision,
        "guidance_interval": list(sampling.guidance_interval), "sampling": sampling.to_dict(), **judged,
        **frechet_report(judge_net, x, train, held, per_class),
        "sampling_seconds": round(seconds, 1), "judge": {"path": str(judge_path), **judge_info},
        "files": ["samples.png", "samples.npz"], "versions": versions(),
    }
    save_grid(x, out / "samples.png", nrow=len(classes) if classes else 10)
    save_npz(out / "samples.npz", x, labels)
    write_json(out / "eval.json", result)
    return _report(result, out)


def _report(result: dict, out: Path) -> dict:
    if "accuracy" in result:
        acc = result["accuracy"]
        say(f"judge accuracy {acc['overall']:.4f}  per class {acc['per_class']}")
    else:
        say(f"classes the judge reads in the samples (shares): {result['class_shares']}")
    n = result.get("n_samples", result["per_class"] * 10)
    say(f"Frechet distance {result['frechet']:.3f}  real-vs-real {result['frechet_real_vs_real']:.3f}  "
        f"ratio {result['ratio']:.2f}  (n={n}; sampling {result['sampling_seconds']:.0f} s) -> {out}/eval.json")
    return {**result, "dir": str(out)}


def _same_folder(recorded: dict, train_images: int, held_out_images: int) -> bool:
    """The run's recorded data folder loaded again (its source named it relative to another directory): the same
    image counts."""
    return bool(recorded.get("data_dir")) and (recorded.get("train_images"), recorded.get("held_out_images")) == (
        train_images, held_out_images)


def _data_dir(info: dict) -> Path | None:
    """The IDX folder a run was trained on: recorded (absolute) in run.json, or named in older runs' data source."""
    if info["data"].get("data_dir"):
        return Path(info["data"]["data_dir"])
    src = info["data"]["source"]
    if src.startswith("IDX train files in "):
        return Path(src[len("IDX train files in "):])
    return None
