"""``fundiff train``: resolve the recipe and data, guard the run directory, train, draw.

A run directory survives a kill at any moment: every file is written atomically, run.json names the last
complete checkpoint, and ``--resume`` continues from it (redrawing the pictures of that epoch, which a kill may have
cut off). A run killed before its first run.json (an interrupted start) holds only files this command writes; a
rerun, with or without --resume, deletes those and starts over. Folders holding anything else are never touched.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from fundiff.errors import UserError, os_advice
from fundiff.io.files import check_writable, pick_device, remove_temporaries, temporary_target
from fundiff.progress import quiet, say
from fundiff.train import checkpoint as ckpt
from fundiff.train import distributed
from fundiff.train.data import DATASETS, FOLDER, Digits, folder_or_name, load_data, load_digits
from fundiff.train.loop import Trainer, ema_warmup_note
from fundiff.train.preview import loss_plot, preview
from fundiff.train.recipes import DIGIT_SHAPE, Recipe, make_recipe

TRAIN_FILES = {
    ".": (r"checkpoint_\d{3,}\.safetensors", r"loss\.csv", r"loss\.png", r"run\.json"),
    "weights": (r"epoch_\d{3,}\.safetensors",),
    "samples": (r"epoch_\d{3,}\.png",),
}
"""Every file ``fundiff train`` writes into a run directory, by folder (names as regular expressions)."""


def run_train(model: str, objective: str | None, recipe_name: str | None, overrides: dict, data_dir: Path | None,
              download: Path | None, out: Path | None, resume: bool, device: str, *,
              explain_os_errors: bool = True) -> dict:
    """Train one recipe into ``out``; refuses to touch an existing run unless --resume.

    On --resume the saved recipe (and the saved data folder, when none is given) is used; options given again
    must agree with it. Any OS error (a folder that cannot be written, a full disk) is one line, with what to do
    next (``explain_os_errors=False``: raised as it is, for a caller that says what to do in its own terms)."""
    overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if v is not None}
    named = {"model": model, "objective": objective, "recipe": recipe_name}
    objective, recipe_name = objective or "ddpm", recipe_name or "default"
    out = Path(out) if out is not None else Path("runs") / f"{model}-{objective}-{recipe_name}"
    ranks = distributed.ranks_from_env()
    if ranks.main:
        check_writable(out)
    torch_device = pick_device(device)
    if ranks.distributed:  # under torchrun: join the others; rank 0 speaks and writes for all
        torch_device = distributed.start(ranks, torch_device)
        quiet(not ranks.main)
    try:
        return _train(model, objective, recipe_name, named, overrides, data_dir, download, out, resume,
                      torch_device, ranks)
    except OSError as e:
        if not explain_os_errors:
            raise
        raise UserError(_stopped(e, out)) from None
    finally:
        if ranks.distributed:
            quiet(False)
            distributed.stop()


def _train(model: str, objective: str, recipe_name: str, named: dict, overrides: dict, data_dir: Path | None,
           download: Path | None, out: Path, resume: bool, device, ranks: distributed.Ranks) -> dict:
    state = _check_run_dir(out, resume)
    data_dir, overrides = _folder_option(overrides, data_dir)
    shape = {k: overrides.pop(k) for k in ("image_size", "channels") if k in overrides}
    recipe = make_recipe(model, objective, recipe_name, **overrides)
    if state == "resume":
        recipe = _resumed_recipe(out, {**{k: v for k, v in named.items() if v is not None}, **overrides, **shape})
        shape = {"image_size": recipe.image_size, "channels": recipe.channels}
        if data_dir is None and download is None:
            data_dir, download = _recorded_data(out)
    data = load_training_data(recipe, data_dir, download, shape, progress=ranks.main)
    recipe = _fit_to(recipe, data)
    say(f"data: {data.source}: {len(data)} images")
    _check_shardable(recipe, ranks)
    trainer = Trainer(recipe, out, data, device, on_epoch=_draw, data_dir=data_dir, download=download, ranks=ranks)
    say(f"train split: {len(trainer.train_set)} images; held out: {len(trainer.held_out)} (never trained on)")
    if "ema_decay" in overrides and state != "resume":
        note = ema_warmup_note(recipe.ema_decay, trainer.total_steps)
        if note:
            say(note)
    if ranks.distributed:
        say(f"{ranks.world} processes (DDP, {'NCCL' if device.type == 'cuda' else 'gloo'}): each trains its "
            f"part of every batch of {recipe.batch_size}")
    if state == "resume":
        trainer.resume()
        if ranks.main:
            for folder in TRAIN_FILES:  # what writes cut off by a kill left, in the folders this command writes
                remove_temporaries(out / folder)
        say(f"resuming {out} after epoch {trainer.epoch} of {recipe.epochs}")
    elif state == "restart":
        if ranks.main:
            _remove_train_files(out)
        say(f"found an interrupted start in {out} (stopped before its first checkpoint was recorded): starting over")
    elif resume:
        say(f"nothing to resume in {out} (an empty folder): starting a new run")
    distributed.barrier()  # rank 0 has cleared what a kill left before anyone trains
    info = trainer.run()
    last = info["history"][-1]
    say(f"done: {out} epoch {info['epoch']}, last-epoch mean loss {last['mean_loss']:.4f}, "
        f"{sum(h['seconds'] for h in info['history']):.0f} s training")
    return info


def _folder_option(overrides: dict, data_dir: Path | None) -> tuple[Path | None, dict]:
    """``--data DIR`` (a folder of images): the recipe's data becomes "folder" and the folder its data directory."""
    if overrides.get("data") is None:
        return data_dir, overrides
    name, data_dir = folder_or_name(overrides["data"], data_dir)
    return data_dir, {**overrides, "data": name}


def load_training_data(recipe: Recipe, data_dir: Path | None, download: Path | None, shape: dict,
                       progress: bool = True) -> Digits:
    """The recipe's data: an image folder at the asked (or the data's own) size and channels, or a named set."""
    if recipe.data == FOLDER:
        return load_data(FOLDER, data_dir, None, shape.get("image_size"), shape.get("channels"), progress)
    asked = {k: v for k, v in shape.items() if v is not None and v != DIGIT_SHAPE[k]}
    if asked and recipe.data in DATASETS:
        listed = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in asked.items())
        raise UserError(f"{listed}: {recipe.data} is 28 px grey; --image-size and --channels apply to a folder of "
                        "images (--data DIR)")
    return load_digits(recipe.data, data_dir, download)


def _check_shardable(recipe: Recipe, ranks: distributed.Ranks) -> None:
    if ranks.distributed and recipe.batch_size < ranks.world:
        raise UserError(f"--batch-size {recipe.batch_size} is smaller than the {ranks.world} processes sharing each "
                        f"batch: give at least {ranks.world}")


def _fit_to(recipe: Recipe, data: Digits) -> Recipe:
    """The recipe with the data's image size, channels and classes (the net is built for them)."""
    if recipe.model == "class" and not data.class_names and data.num_classes == 1:
        raise UserError(f"{data.source} is one flat folder, so it has no classes: train a time model on it, or sort "
                        "its images into one subfolder per class")
    names = data.class_names if recipe.data not in DATASETS else ()
    return replace(recipe, image_size=data.image_size, channels=data.channels, num_classes=data.num_classes,
                   class_names=tuple(names))


def _resumed_recipe(out: Path, asked: dict) -> Recipe:
    """The saved recipe, if every option given again agrees with it."""
    saved = Recipe.from_dict(ckpt.read_run(out)["recipe"])
    diff = {k: (getattr(saved, k), v) for k, v in asked.items() if v != getattr(saved, k)}
    if diff:
        listed = ", ".join(f"{k}: saved {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise UserError(f"cannot resume {out} with a different recipe ({listed})")
    return saved


def _recorded_data(out: Path) -> tuple[Path | None, Path | None]:
    """The data folder (IDX files or images; or the torchvision download root) the run in ``out`` was trained on,
    from its run.json; a recorded folder that is gone is a UserError naming it."""
    data = ckpt.read_run(out).get("data", {})
    data_dir, download = data.get("data_dir"), data.get("download")
    if data_dir is None and "data_dir" not in data:  # a run from before fundiff recorded it: its source names it
        m = re.fullmatch(r"IDX train files in (.+)", str(data.get("source", "")))
        data_dir = m.group(1) if m else None
    if data_dir is not None and not Path(data_dir).is_dir():
        again = "--data" if ckpt.read_run(out).get("recipe", {}).get("data") == FOLDER else "--data-dir"
        raise UserError(f"cannot resume {out}: it was trained on the data in {data_dir}, which is missing; "
                        f"pass {again} with the same files")
    return (Path(data_dir) if data_dir else None), (Path(download) if download else None)


def _check_run_dir(out: Path, resume: bool) -> str:
    """What to do with ``out``: "new" (absent or empty), "resume" (a run to continue) or "restart" (an interrupted
    start: only files this command writes, no run.json yet). Anything else is a UserError."""
    if (out / ckpt.RUN_FILE).is_file():
        if resume:
            return "resume"
        raise UserError(f"{out} already exists and is not empty; pass --resume to continue it or choose another --out")
    if not out.exists():
        if resume:
            raise UserError(f"cannot resume: {out} holds no training run")
        return "new"
    if not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    ours = _train_files(out)
    if ours is None:
        if resume:
            raise UserError(f"cannot resume: {out} holds no training run")
        raise UserError(f"{out} already exists and is not empty (and holds no training run); choose another --out")
    return "restart" if ours else "new"


def _train_files(out: Path) -> list[Path] | None:
    """The files (and folders) under ``out`` that ``fundiff train`` writes, including what interrupted atomic
    writes leave; None when anything else is there."""
    found = []
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if p.is_dir() and not p.is_symlink() and len(rel.parts) == 1 and rel.name in TRAIN_FILES:
            found.append(p)
            continue
        folder = "." if len(rel.parts) == 1 else rel.parts[0]
        if len(rel.parts) > 2 or folder not in TRAIN_FILES or not p.is_file() or p.is_symlink():
            return None
        name = temporary_target(p.name)
        if name == "":  # a writability probe
            found.append(p)
            continue
        if not any(re.fullmatch(pattern, name or p.name) for pattern in TRAIN_FILES[folder]):
            return None
        found.append(p)
    return found


def _remove_train_files(out: Path) -> None:
    """Delete an interrupted start (only files :func:`_train_files` recognised), keeping ``out`` itself."""
    files = _train_files(out) or []
    for p in files:
        if p.is_file():
            p.unlink(missing_ok=True)
    for p in files:
        if p.is_dir():
            p.rmdir()


def _stopped(e: OSError, out: Path) -> str:
    """One line for an OS error met while training: what happened, and how to go on."""
    where = f" ({e.filename})" if e.filename else ""
    advice = os_advice(e)
    started = (out / ckpt.RUN_FILE).is_file()
    again = "run the same command with --resume to continue from the last finished epoch" if started else \
        "run the same command again"
    return f"training in {out} stopped: {e.strerror or e}{where}; {advice}, then {again}"


def _draw(trainer: Trainer, epoch: int) -> None:
    """At a sample epoch: the preview grid of the saved weights and the loss curve so far."""
    r = trainer.recipe
    examples = trainer.held_out.images[:: max(1, len(trainer.held_out) // 8)][:8]
    preview(trainer.sampling_net(), r, trainer.run_dir, epoch, examples.to(trainer.device), seed=r.seed)
    loss_plot(trainer.run_dir, trainer.losses, f"{r.model} / {r.objective} / {r.recipe}: training loss")
