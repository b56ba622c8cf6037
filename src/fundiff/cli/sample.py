"""``fundiff sample``: grids, samples.npz, GIFs of the trajectory, and the record of the run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import typer
from tqdm import tqdm

from fundiff.errors import UserError
from fundiff.io.files import atomic_write, pick_device, versions, write_json
from fundiff.io.pictures import save_gif, save_grid
from fundiff.nets.unet import UNet
from fundiff.sampling.digits import SAMPLERS, class_grid_labels, generate
from fundiff.train.checkpoint import load_model
from fundiff.train.recipes import Recipe


def sample_images(net: UNet, recipe: Recipe, labels: torch.Tensor | None, n: int, guidance: float, sampler: str,
                  steps: int | None, seed: int, frames: list | None = None, desc: str = "sample",
                  clip: bool | None = None) -> torch.Tensor:
    """Generate with a progress bar; collect ~60 trajectory frames into ``frames`` when given."""
    total = steps or (50 if sampler == "ddim" and recipe.objective == "ddpm" else recipe.T)
    every = max(1, total // 60)
    bar = tqdm(total=total, desc=desc, unit="step", leave=False)

    def callback(d: dict) -> None:
        bar.update(1)
        if frames is not None and (d["i"] % every == 0 or d["i"] == total - 1):
            frames.append(d["x"].clamp(0, 1).cpu())

    try:
        x = generate(net, recipe, n, labels, guidance, sampler, steps, seed, callback, clip)
    finally:
        bar.close()
    return x.clamp(0, 1).cpu()


def check_sampling_args(recipe: Recipe, classes: list[int], per_class: int, guidance: float, steps: int | None,
                        sampler: str = "ddpm") -> None:
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if recipe.model == "denoiser":
        raise UserError("this is a single-step denoiser run; it cannot sample (use fundiff figures)")
    if any(not 0 <= c <= 9 for c in classes):
        raise UserError(f"--classes must be digits 0-9, got {classes}")
    if per_class < 1:
        raise UserError("--per-class must be at least 1")
    if guidance < 0:
        raise UserError("--guidance must be >= 0")
    if steps is not None and not 1 <= steps <= recipe.T:
        raise UserError(f"--steps must be in 1..{recipe.T}")


def sampling_recipe(recipe: Recipe, precision: str | None = None,
                    interval: tuple[float, float] | None = None) -> Recipe:
    """The recipe sampling uses: its own precision and guidance interval unless others are given."""
    changes = {k: v for k, v in (("precision", precision), ("guidance_interval", interval)) if v is not None}
    return replace(recipe, **changes)


def settings_name(prefix: str, epoch: int, recipe: Recipe, sampler: str, steps: int | None, guidance: float,
                  seed: int, clip: bool | None) -> str:
    """A directory name that differs whenever a setting that changes the samples differs."""
    lo, hi = recipe.guidance_interval
    clipped = recipe.clip_x0 if clip is None else clip
    clipped = clipped or recipe.objective == "flow"  # Euler has no x0_hat to clamp
    return (f"{prefix}-e{epoch}-{sampler if recipe.objective == 'ddpm' else 'euler'}-{steps or 'full'}-g{guidance:g}"
            f"-s{seed}-{recipe.precision}-gi{lo:g}-{hi:g}{'' if clipped else '-noclip'}")


def save_npz(path: Path, images: torch.Tensor, labels: torch.Tensor | None) -> None:
    """images as uint8 (N, 28, 28) and labels (N,) (-1 for unconditional samples)."""
    u8 = (images[:, 0] * 255).round().to(torch.uint8).numpy()
    lab = labels.numpy() if labels is not None else np.full(len(u8), -1)

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez_compressed(f, images=u8, labels=lab)

    atomic_write(path, write)


def run_sample(run_dir: Path, classes: list[int], per_class: int, guidance: float, sampler: str, steps: int | None,
               epoch: int | None, seed: int, gif: bool, out: Path | None, device: str,
               clip: bool | None = None, precision: str | None = None,
               interval: tuple[float, float] | None = None) -> Path:
    net, recipe, ep = load_model(run_dir, epoch, pick_device(device))
    recipe = sampling_recipe(recipe, precision, interval)
    check_sampling_args(recipe, classes, per_class, guidance, steps, sampler)
    is_class = recipe.model == "class"
    labels = class_grid_labels(classes, per_class) if is_class else None
    n = len(classes) * per_class if is_class else 10 * per_class
    name = settings_name("sample", ep, recipe, sampler, steps, guidance, seed, clip)
    out = Path(out) if out is not None else (Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent) / name
    frames: list = [] if gif else None
    x = sample_images(net, recipe, labels, n, guidance, sampler, steps, seed, frames, clip=clip)
    nrow = len(classes) if is_class else 10
    save_grid(x, out / "samples.png", nrow=nrow)
    save_npz(out / "samples.npz", x, labels)
    if gif:
        save_gif(frames, out / "samples.gif", nrow=nrow)
    write_json(out / "sample.json", {
        "model": str(run_dir), "epoch": ep, "recipe": recipe.to_dict(), "classes": classes if is_class else None,
        "per_class": per_class, "guidance": guidance if is_class else None, "sampler": sampler
        if recipe.objective == "ddpm" else "euler", "steps": steps, "seed": seed,
        "clip_x0": recipe.clip_x0 if clip is None else clip, "versions": versions()})
    typer.echo(f"wrote {out}/samples.png, samples.npz{', samples.gif' if gif else ''}")
    return out
