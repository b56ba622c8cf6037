"""Part A edits over any denoiser: blur baseline, one-step denoising, SDEdit, RePaint inpainting.

All images are in the model's data range; ``timesteps`` are descending 0-based indices (e.g.
``strided_timesteps(1000, 30)``: 990, 960, ..., 0) and ``i_start`` indexes into them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms.functional import gaussian_blur

from fundiff.core.loop import Callback, Projection, predict_x0, sample_loop
from fundiff.core.model import EpsFn
from fundiff.core.schedule import Schedule, forward_process
from fundiff.errors import UserError


def noise_to(x0: torch.Tensor, k: int, schedule: Schedule, generator: torch.Generator) -> torch.Tensor:
    """Forward process (spec 1.1): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eps ~ N(0, I) from ``generator``."""
    eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    return forward_process(x0, torch.full((x0.shape[0],), k, device=x0.device), schedule, eps)


def blur_denoise(x_t: torch.Tensor, kernel: int = 5, sigma: float = 2.0) -> torch.Tensor:
    """Classical denoising (spec 1.2): a Gaussian blur of x_t, the baseline that fails."""
    return gaussian_blur(x_t, [kernel, kernel], [sigma, sigma])


def one_step_denoise(eps_fn: EpsFn, x_t: torch.Tensor, k: int, schedule: Schedule) -> torch.Tensor:
    """One-step denoising (spec 1.3): x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)."""
    pred = eps_fn(x_t, torch.full((x_t.shape[0],), k, dtype=torch.long, device=x_t.device))
    return predict_x0(x_t, pred.eps, schedule.abar(k).to(x_t.dtype).to(x_t.device))


def check_i_start(timesteps: Sequence[int], i_start: int) -> None:
    if not 0 <= i_start < len(timesteps):
        raise UserError(f"i_start {i_start} is outside 0..{len(timesteps) - 1}: there are {len(timesteps)} "
                        f"timesteps, {timesteps[0]} down to {timesteps[-1]}")


def iterative_denoise(eps_fn: EpsFn, x_t: torch.Tensor, timesteps: Sequence[int], i_start: int, schedule: Schedule,
                      generator: torch.Generator, sampler: str = "ddpm", variance: str = "posterior",
                      clip: tuple[float, float] | None = None, callback: Callback | None = None,
                      project: Projection | None = None) -> torch.Tensor:
    """Iterative denoising (spec 1.4): the strided update (DDPM, or DDIM) from timesteps[i_start] down to the
    clean image."""
    check_i_start(timesteps, i_start)
    return sample_loop(eps_fn, x_t, timesteps[i_start:], schedule, generator, sampler, variance, clip, callback,
                       project)


def sdedit(eps_fn: EpsFn, x0: torch.Tensor, timesteps: Sequence[int], i_start: int, schedule: Schedule,
           generator: torch.Generator, **kw) -> torch.Tensor:
    """SDEdit (spec 1.7): noise x_0 to timesteps[i_start] with the forward process, then denoise from there."""
    check_i_start(timesteps, i_start)
    x_t = noise_to(x0, timesteps[i_start], schedule, generator)
    return iterative_denoise(eps_fn, x_t, timesteps, i_start, schedule, generator, **kw)


def repaint_projection(x_orig: torch.Tensor, mask: torch.Tensor, schedule: Schedule,
                       generator: torch.Generator) -> Projection:
    """RePaint (spec 1.7.2): x_t <- m x_t + (1 - m) forward(x_orig, t); m = 1 where new content goes.

    At the clean image (k = -1, abar = 1) the projection puts back x_orig exactly outside the mask.
    """
    mask = mask.to(x_orig.device, x_orig.dtype)

    def project(x: torch.Tensor, k: int) -> torch.Tensor:
        known = x_orig if k < 0 else noise_to(x_orig, k, schedule, generator)
        return mask * x + (1 - mask) * known

    return project
