"""DDPM and DDIM updates over any denoiser, and the sampling loop (spec.md 1.4 and Part B)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from fundiff.core.model import EpsFn, Prediction
from fundiff.core.schedule import Schedule

VARIANCES = ("beta", "posterior", "learned")
Callback = Callable[[dict], None]
Projection = Callable[[torch.Tensor, int], torch.Tensor]
"""project(x_t', k') -> x_t': applied after every step (k' = -1 is the clean image), e.g. inpainting."""


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    return (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()


def step_variance(pred: Prediction, abar_t: torch.Tensor, abar_prev: torch.Tensor, kind: str) -> torch.Tensor:
    """Variance of the step t -> t' with beta_t = 1 - abar_t / abar_t':
    "beta": beta_t (spec Part B); "posterior": beta_t (1 - abar_t') / (1 - abar_t);
    "learned": exp(frac log beta_t + (1 - frac) log posterior), frac = (v + 1) / 2 (learned range)."""
    beta_t = 1 - abar_t / abar_prev
    if kind == "beta":
        return beta_t
    posterior = (beta_t * (1 - abar_prev) / (1 - abar_t)).clamp(min=1e-20)
    if kind == "posterior":
        return posterior
    if pred.variance is None:
        raise ValueError("variance='learned' needs a model that predicts its variance")
    frac = (pred.variance + 1) / 2
    return torch.exp(frac * beta_t.log() + (1 - frac) * posterior.log())


def ddpm_update(x_t: torch.Tensor, pred: Prediction, abar_t: torch.Tensor, abar_prev: torch.Tensor,
                noise: torch.Tensor | None, variance: str = "beta", clip: tuple[float, float] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One strided DDPM step t -> t' (spec 1.4); returns (x_t', x0_hat).

    x_t' = sqrt(abar_t') beta_t / (1 - abar_t) x0_hat + sqrt(alpha_t) (1 - abar_t') / (1 - abar_t) x_t
           + sqrt(var) z,  alpha_t = abar_t / abar_t', and no noise on the last step (noise=None).
    """
    alpha_t = abar_t / abar_prev
    beta_t = 1 - alpha_t
    x0_hat = predict_x0(x_t, pred.eps, abar_t)
    if clip is not None:
        x0_hat = x0_hat.clamp(*clip)
    mean = (abar_prev.sqrt() * beta_t / (1 - abar_t)) * x0_hat + (alpha_t.sqrt() * (1 - abar_prev) / (1 - abar_t)) * x_t
    if noise is None:
        return mean, x0_hat
    return mean + step_variance(pred, abar_t, abar_prev, variance).sqrt() * noise, x0_hat


def ddim_update(x_t: torch.Tensor, pred: Prediction, abar_t: torch.Tensor, abar_prev: torch.Tensor,
                noise: torch.Tensor | None = None, clip: tuple[float, float] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (eta = 0): x_t' = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') eps_hat.

    With clipping, eps_hat is recomputed from the clipped x0_hat so the two stay consistent.
    """
    x0_hat = predict_x0(x_t, pred.eps, abar_t)
    eps = pred.eps
    if clip is not None:
        x0_hat = x0_hat.clamp(*clip)
        eps = (x_t - abar_t.sqrt() * x0_hat) / (1 - abar_t).sqrt()
    return abar_prev.sqrt() * x0_hat + (1 - abar_prev).sqrt() * eps, x0_hat


def sample_loop(eps_fn: EpsFn, x: torch.Tensor, timesteps: Sequence[int], schedule: Schedule,
                generator: torch.Generator | None = None, sampler: str = "ddpm", variance: str = "beta",
                clip: tuple[float, float] | None = None, callback: Callback | None = None,
                project: Projection | None = None) -> torch.Tensor:
    """Run x from timesteps[0] down through timesteps (descending) to a clean image.

    Each step goes from k to the next entry (or to the clean image after the last). The noise z is
    drawn on the CPU from ``generator`` so a seed gives the same image on any device. ``project``
    (if given) maps each new x_t' before the next step; ``callback`` gets {"i", "k", "k_prev", "x",
    "x0_hat"} after every step.
    """
    ks = list(timesteps) + [-1]
    for i, (k, k_prev) in enumerate(zip(ks[:-1], ks[1:])):
        abar_t, abar_prev = (schedule.abar(v).to(x.dtype).to(x.device) for v in (k, k_prev))
        pred = eps_fn(x, torch.full((x.shape[0],), k, dtype=torch.long, device=x.device))
        if sampler == "ddim":
            x, x0_hat = ddim_update(x, pred, abar_t, abar_prev, clip=clip)
        else:
            noise = None if k_prev < 0 else torch.randn(x.shape, generator=generator).to(x.device)
            x, x0_hat = ddpm_update(x, pred, abar_t, abar_prev, noise, variance, clip)
        if project is not None:
            x = project(x, k_prev)
        if callback is not None:
            callback({"i": i, "k": k, "k_prev": k_prev, "x": x, "x0_hat": x0_hat})
    return x


def euler_loop(velocity_fn: EpsFn, x: torch.Tensor, steps: int, callback: Callback | None = None) -> torch.Tensor:
    """Flow-matching sampling by Euler: x <- x + (1 / N) u_theta(x, i / N), i = 0..N-1, from x_0 ~ N(0, I)."""
    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps, device=x.device)
        x = x + velocity_fn(x, t).eps / steps
        if callback is not None:
            callback({"i": i, "k": i, "x": x, "x0_hat": x})
    return x
