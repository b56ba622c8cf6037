"""``fundiff train``: resolve the recipe and data, guard the run directory, train, draw."""

from __future__ import annotations

from pathlib import Path

from fundiff.errors import UserError
from fundiff.io.files import pick_device
from fundiff.progress import say
from fundiff.train import checkpoint as ckpt
from fundiff.train.data import load_digits
from fundiff.train.loop import Trainer
from fundiff.train.preview import loss_plot, preview
from fundiff.train.recipes import Recipe, make_recipe


def run_train(model: str, objective: str | None, recipe_name: str | None, overrides: dict, data_dir: Path | None,
              download: Path | None, out: Path | None, resume: bool, device: str) -> dict:
    """Train one recipe into ``out``; refuses to touch an existing run unless --resume.

    On --resume the saved recipe is used; options given again must agree with it."""
    overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if v is not None}
    named = {"model": model, "objective": objective, "recipe": recipe_name}
    objective, recipe_name = objective or "ddpm", recipe_name or "default"
    out = Path(out) if out is not None else Path("runs") / f"{model}-{objective}-{recipe_name}"
    _check_run_dir(out, resume)
    recipe = make_recipe(model, objective, recipe_name, **overrides)
    if resume:
        recipe = _resumed_recipe(out, {**{k: v for k, v in named.items() if v is not None}, **overrides})
    data = load_digits(recipe.data, data_dir, download)
    say(f"data: {data.source}: {len(data)} images")
    trainer = Trainer(recipe, out, data, pick_device(device), on_epoch=_draw)
    say(f"train split: {len(trainer.train_set)} images; held out: {len(trainer.held_out)} (never trained on)")
    if resume:
        trainer.resume()
        say(f"resuming {out} after epoch {trainer.epoch} of {recipe.epochs}")
    info = trainer.run()
    last = info["history"][-1]
    say(f"done: {out} epoch {info['epoch']}, last-epoch mean loss {last['mean_loss']:.4f}, "
               f"{sum(h['seconds'] for h in info['history']):.0f} s training")
    return info


def _resumed_recipe(out: Path, asked: dict) -> Recipe:
    """The saved recipe, if every option given again agrees with it."""
    saved = Recipe.from_dict(ckpt.read_run(out)["recipe"])
    diff = {k: (getattr(saved, k), v) for k, v in asked.items() if v != getattr(saved, k)}
    if diff:
        listed = ", ".join(f"{k}: saved {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise UserError(f"cannot resume {out} with a different recipe ({listed})")
    return saved


def _check_run_dir(out: Path, resume: bool) -> None:
    exists = (out / ckpt.RUN_FILE).exists()
    if resume and not exists:
        raise UserError(f"cannot resume: {out} holds no training run")
    if not resume and out.exists() and any(out.iterdir()):
        raise UserError(f"{out} already exists and is not empty; pass --resume to continue it or choose another --out")


def _draw(trainer: Trainer, epoch: int) -> None:
    """At a sample epoch: the preview grid of the saved weights and the loss curve so far."""
    r = trainer.recipe
    examples = trainer.held_out.images[:: max(1, len(trainer.held_out) // 8)][:8]
    preview(trainer.sampling_net(), r, trainer.run_dir, epoch, examples.to(trainer.device), seed=r.seed)
    loss_plot(trainer.run_dir, trainer.losses, f"{r.model} / {r.objective} / {r.recipe}: training loss")
