"""Sampling from a trained fundiff digit model: DDPM, DDIM or Euler (flow), with CFG for class nets."""

from __future__ import annotations

import torch

from fundiff.core.guidance import cfg, limited_interval
from fundiff.core.loop import Callback, euler_loop, sample_loop
from fundiff.core.model import EpsFn
from fundiff.core.schedule import Schedule, evenly_spaced_timesteps, linear_schedule
from fundiff.errors import UserError
from fundiff.models.fundiff_unet import unet_denoiser
from fundiff.nets.unet import UNet
from fundiff.train.recipes import Recipe

SAMPLERS = ("ddpm", "ddim")


def recipe_schedule(recipe: Recipe) -> Schedule | None:
    """The DDPM schedule a recipe trained with (None for flow matching)."""
    return None if recipe.objective == "flow" else linear_schedule(recipe.T, recipe.beta_start, recipe.beta_end)


def guided_denoiser(net: UNet, schedule: Schedule | None, labels: torch.Tensor | None, guidance: float,
                    precision: str = "fp32", interval: tuple[float, float] = (0.0, 1.0)) -> EpsFn:
    """The class net with CFG (eps_u from the null class), applied where the noise level is in
    ``interval`` (DDPM: t / T = (k + 1) / T; flow: 1 - t); time-only nets are used as they are."""
    if net.config.conditioning != "class" or labels is None:
        return unet_denoiser(net, schedule, None, precision)
    cond = unet_denoiser(net, schedule, labels, precision)
    if guidance == 1.0:
        return cond
    guided = cfg(cond, unet_denoiser(net, schedule, None, precision), guidance)
    if tuple(interval) == (0.0, 1.0):
        return guided
    lo, hi = interval

    def active(k: torch.Tensor) -> bool:
        level = 1.0 - float(k[0]) if schedule is None else float(k[0] + 1) / schedule.T
        return lo <= level <= hi

    return limited_interval(guided, cond, active)


def generate(net: UNet, recipe: Recipe, n: int, labels: torch.Tensor | None = None, guidance: float = 5.0,
             sampler: str = "ddpm", steps: int | None = None, seed: int = 0,
             callback: Callback | None = None, clip: bool | None = None) -> torch.Tensor:
    """n samples (n, 1, 28, 28) from x_T ~ N(0, I) drawn with ``seed``.

    DDPM uses all T steps unless ``steps`` is given; DDIM uses ``steps`` (default 50); flow models
    use Euler with ``steps`` (default T). ``clip`` (default: the recipe's ``clip_x0``) clamps x0_hat
    to the data range [0, 1] at every DDPM/DDIM step.
    """
    if recipe.model == "denoiser":
        raise UserError("a single-step denoiser cannot sample; train a time or class model")
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    device = next(net.parameters()).device
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 1, 28, 28), generator=g).to(device)
    schedule = recipe_schedule(recipe)
    eps_fn = guided_denoiser(net, schedule, labels.to(device) if labels is not None else None, guidance,
                             recipe.precision, recipe.guidance_interval)
    if schedule is None:
        return euler_loop(eps_fn, x, steps or recipe.T, callback)
    n_steps = steps or (50 if sampler == "ddim" else recipe.T)
    timesteps = evenly_spaced_timesteps(schedule.T, n_steps)
    clip_range = (0.0, 1.0) if (recipe.clip_x0 if clip is None else clip) else None
    return sample_loop(eps_fn, x, timesteps, schedule, g, sampler, "beta", clip_range, callback)


def class_grid_labels(classes: list[int], per_class: int) -> torch.Tensor:
    """Labels laid out for a grid with one column per class: rows repeat classes."""
    return torch.tensor(classes * per_class, dtype=torch.long)
