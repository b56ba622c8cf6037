"""Part A edits over any denoiser and process: blur baseline, one-step denoising, SDEdit, RePaint inpainting.

All images are in the model's data range; ``timesteps`` are descending 0-based indices (e.g.
``strided_timesteps(1000, 30)``: 990, 960, ..., 0) and ``i_start`` indexes into them. ``process`` is a DDPM
:class:`~fundiff.core.schedule.Schedule` or a flow :class:`~fundiff.core.schedule.FlowPath`; its ``levels``
turn timestep indices into what its denoiser and update take.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fundiff.core.bands import gaussian_lowpass
from fundiff.core.contract import Denoiser
from fundiff.core.loop import Callback, Projection, Step, level_tensor, run_loop
from fundiff.core.schedule import FlowPath, Schedule
from fundiff.errors import UserError

Process = Schedule | FlowPath


def level_of(process: Process, k: int) -> int | float:
    """The process's level at timestep index k (k itself for DDPM, t = (T - 1 - k) / T for flow)."""
    return process.levels([k])[0]


def noise_to(x0: torch.Tensor, k: int, process: Process, generator: torch.Generator) -> torch.Tensor:
    """Forward process (spec 1.1) to timestep index k: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM) or
    (1 - t) eps + t x_0 (flow), eps ~ N(0, I) from ``generator``."""
    eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    return process.forward(x0, level_of(process, k), eps)


def blur_denoise(x_t: torch.Tensor, kernel: int = 5, sigma: float = 2.0) -> torch.Tensor:
    """Classical denoising (spec 1.2): a Gaussian blur G_sigma * x_t, the baseline that fails."""
    return gaussian_lowpass(x_t, kernel, sigma)


def one_step_denoise(fn: Denoiser, x_t: torch.Tensor, k: int, process: Process) -> torch.Tensor:
    """One-step denoising (spec 1.3): x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) (DDPM), or
    x_t + (1 - t) u(x_t, t) (flow)."""
    level = level_of(process, k)
    return process.x0_hat(x_t, fn(x_t, level_tensor(level, x_t)), level)


def check_i_start(timesteps: Sequence[int], i_start: int) -> None:
    if not 0 <= i_start < len(timesteps):
        raise UserError(f"i_start {i_start} is outside 0..{len(timesteps) - 1}: there are {len(timesteps)} "
                        f"timesteps, {timesteps[0]} down to {timesteps[-1]}")


def iterative_denoise(fn: Denoiser, x_t: torch.Tensor, timesteps: Sequence[int], i_start: int, process: Process,
                      step: Step, generator: torch.Generator, callback: Callback | None = None,
                      project: Projection | None = None) -> torch.Tensor:
    """Iterative denoising (spec 1.4): ``step`` from timesteps[i_start] down to the clean image."""
    check_i_start(timesteps, i_start)
    return run_loop(fn, x_t, process.levels(list(timesteps[i_start:])), step, generator, callback, project)


def sdedit(fn: Denoiser, x0: torch.Tensor, timesteps: Sequence[int], i_start: int, process: Process, step: Step,
           generator: torch.Generator, callback: Callback | None = None) -> torch.Tensor:
    """SDEdit (spec 1.7): noise x_0 to timesteps[i_start] with the forward process, then denoise from there."""
    check_i_start(timesteps, i_start)
    x_t = noise_to(x0, timesteps[i_start], process, generator)
    return iterative_denoise(fn, x_t, timesteps, i_start, process, step, generator, callback)


def repaint_projection(x_orig: torch.Tensor, mask: torch.Tensor, process: Process,
                       generator: torch.Generator) -> Projection:
    """RePaint (spec 1.7.2): x_t <- m x_t + (1 - m) forward(x_orig, t); m = 1 where new content goes.

    At the clean image the projection puts back x_orig exactly outside the mask.
    """
    mask = mask.to(x_orig.device, x_orig.dtype)

    def project(x: torch.Tensor, level: int | float) -> torch.Tensor:
        if process.is_clean(level):
            known = x_orig
        else:
            eps = torch.randn(x_orig.shape, generator=generator).to(x_orig.device, x_orig.dtype)
            known = process.forward(x_orig, level, eps)
        return mask * x + (1 - mask) * known

    return project
