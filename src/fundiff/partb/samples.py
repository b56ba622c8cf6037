"""Sample grids of a class (or time) model: the one generation path (:func:`fundiff.parta.generate`) laid out
one column per class, with the trajectory frames for a GIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fundiff import parta
from fundiff.core.model import DiffusionModel
from fundiff.core.sampling import Sampling
from fundiff.errors import UserError
from fundiff.io.files import atomic_write


def class_grid_labels(classes: list[int], per_class: int) -> torch.Tensor:
    """Labels laid out for a grid with one column per class: rows repeat classes."""
    return torch.tensor(classes * per_class, dtype=torch.long)


def check_grid(model: DiffusionModel, classes: list[int] | None, per_class: int, sampling: Sampling | None
               ) -> Sampling:
    """One clear line for a grid that cannot be drawn (before any work); returns the resolved settings."""
    if per_class < 1:
        raise UserError("--per-class must be at least 1")
    if classes is not None and model.conditioning != "class":
        raise UserError(f"model {model.name} is not class-conditioned: it takes no --classes")
    if classes is not None:
        model.check_condition(list(classes))
    n = per_class * (len(classes) if classes is not None else 10)
    parta.check_count(model, n, f"--per-class {per_class} x {n // per_class} classes")
    s = parta.settings(model, sampling)
    parta.timesteps(model, s)
    return s


def sample_grid(model: DiffusionModel, classes: list[int] | None, per_class: int, seed: int = 0,
                sampling: Sampling | None = None, frames: list | None = None, progress: bool | str = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images (N, C, H, W) in [0, 1], labels or None): ``per_class`` samples of each class of a class model in
    rows of len(classes), or 10 x ``per_class`` samples of an unconditional one. ``frames`` (if given) collects
    about 60 frames of the trajectory."""
    s = check_grid(model, classes, per_class, sampling)
    labels = class_grid_labels(classes, per_class) if classes is not None else None
    n = len(labels) if labels is not None else 10 * per_class
    total = len(s.timesteps(model.schedule.T))
    every = max(1, total // 60)

    def keep(d: dict) -> None:
        if frames is not None and (d["i"] % every == 0 or d["i"] == total - 1):
            frames.append(model.to_unit_range(d["x"].float().cpu()).clamp(0, 1))

    cond = labels.tolist() if labels is not None else None
    x = parta.generate(model, cond, n, seed=seed, sampling=s, callback=keep, progress=progress)
    return x, labels


def settings_name(prefix: str, epoch: int, model: DiffusionModel, s: Sampling, seed: int, precision: str) -> str:
    """A folder name that differs whenever a setting that changes the samples differs."""
    lo, hi = s.guidance_interval
    full = s.steps is None and s.stride == 1
    steps = "full" if full else (s.steps or f"stride{s.stride}")
    clipped = s.clip or model.is_flow  # Euler has no x0_hat to clamp
    variance = "" if model.is_flow or s.variance in ("beta", None) else f"-{s.variance}"  # None: DDPM's beta
    guidance = s.guidance if model.conditioning == "class" else model.sampling.guidance
    return (f"{prefix}-e{epoch}-{s.sampler}-{steps}-g{guidance:g}-s{seed}"
            f"-{precision}-gi{lo:g}-{hi:g}{'' if clipped else '-noclip'}{variance}")


def save_npz(path: Path, images: torch.Tensor, labels: torch.Tensor | None) -> None:
    """images as uint8 (N, H, W) (grey) or (N, H, W, 3) (colour) and labels (N,) (-1 for unconditional samples)."""
    grid = images[:, 0] if images.shape[1] == 1 else images.permute(0, 2, 3, 1)
    u8 = (grid * 255).round().to(torch.uint8).numpy()
    lab = labels.numpy() if labels is not None else np.full(len(u8), -1)

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez_compressed(f, images=u8, labels=lab)

    atomic_write(path, write)
