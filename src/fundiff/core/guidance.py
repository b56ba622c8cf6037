"""Classifier-free guidance and its gate, as wrappers over bound denoisers (spec.md 1.6; Kynkaanniemi et al. 2024).

Written once for every model kind: the estimates are combined through ``value``, so the same wrapper guides a
noise prediction (eps) and a flow model's velocity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fundiff.core.contract import Denoiser, Output

NoiseLevel = Callable[[int | float], float]
"""level (a timestep index or a flow time) -> its noise level in [0, 1] (1 = pure noise)."""


def cfg(cond: Denoiser, uncond: Denoiser, gamma: float) -> Denoiser:
    """eps = eps_u + gamma (eps_c - eps_u) (or the same on velocities); the conditional variance is kept (spec 1.6)."""

    def guided(x_t: torch.Tensor, level: torch.Tensor) -> Output:
        c, u = cond(x_t, level), uncond(x_t, level)
        return c.with_value(u.value + gamma * (c.value - u.value), c.variance)

    return guided


def limited_interval(guided: Denoiser, plain: Denoiser, active: Callable[[torch.Tensor], bool]) -> Denoiser:
    """Guidance in a limited interval: the guided estimate at steps where ``active(level)`` holds, the plain
    conditional one elsewhere (one net call instead of two there)."""

    def fn(x_t: torch.Tensor, level: torch.Tensor) -> Output:
        return guided(x_t, level) if active(level) else plain(x_t, level)

    return fn


def guidance_gate(cond: Denoiser, uncond: Denoiser | None, gamma: float, interval: tuple[float, float],
                  noise_level: NoiseLevel) -> Denoiser:
    """CFG with scale ``gamma`` where the noise level lies in ``interval`` (both ends included), the conditional
    estimate elsewhere; just ``cond`` when gamma = 1 or there is no unconditional denoiser."""
    if uncond is None or gamma == 1.0:
        return cond
    guided = cfg(cond, uncond, gamma)
    lo, hi = interval
    if (lo, hi) == (0.0, 1.0):
        return guided
    return limited_interval(guided, cond, lambda level: lo <= noise_level(level[0].item()) <= hi)
