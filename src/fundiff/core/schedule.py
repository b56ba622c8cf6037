"""Noise schedules, strided timesteps and the forward process.

Timesteps are 0-based indices k in {0, ..., T-1}, as in diffusers: ``alphas_cumprod[k]`` is
abar at k, and the step before k = 0 is the clean image (abar = 1). The spec's Part B counts
t in {1, ..., T}; the two are related by t = k + 1, so abar_t = alphas_cumprod[t - 1] and the
network sees the normalised time t / T = (k + 1) / T (see :meth:`Schedule.model_time`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Schedule:
    """A discrete DDPM schedule given by its betas (shape (T,))."""

    betas: torch.Tensor

    @property
    def T(self) -> int:  # noqa: N802 - the paper's name
        return int(self.betas.shape[0])

    @property
    def alphas(self) -> torch.Tensor:
        """alpha_k = 1 - beta_k."""
        return 1.0 - self.betas

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """abar_k = prod_{j <= k} alpha_j."""
        return torch.cumprod(self.alphas, dim=0)

    def abar(self, k: torch.Tensor | int) -> torch.Tensor:
        """abar at timestep index k, with abar(-1) = 1 (the clean image)."""
        k = torch.as_tensor(k)
        ac = torch.cat([torch.ones(1, dtype=self.betas.dtype), self.alphas_cumprod])
        return ac[k.long() + 1]

    def model_time(self, k: torch.Tensor | int) -> torch.Tensor:
        """The network's time input: t / T with the spec's t = k + 1 (so t / T is in (0, 1])."""
        return (torch.as_tensor(k, dtype=torch.float32) + 1.0) / self.T

    def to_dict(self) -> dict:
        return {"betas": self.betas.tolist()}


def linear_schedule(T: int = 300, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """betas = linspace(beta_start, beta_end, T) (spec.md Part B: 1e-4, 0.02, 300)."""
    return Schedule(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))


def cosine_schedule(T: int = 1000, max_beta: float = 0.999) -> Schedule:
    """diffusers' ``squaredcos_cap_v2``: beta_k = min(1 - f(k+1)/f(k), max_beta), f = cos^2."""

    def f(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]
    return Schedule(torch.tensor(betas, dtype=torch.float64))


def forward_process(x0: torch.Tensor, k: torch.Tensor, schedule: Schedule, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, per sample (k: (B,) timestep indices)."""
    abar = schedule.abar(k).to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


def strided_timesteps(T: int, stride: int, start: int | None = None) -> list[int]:
    """Descending timesteps start, start - stride, ..., >= 0 (default start: the largest multiple
    of ``stride`` below T, e.g. T=1000, stride=30 -> 990, 960, ..., 0: 34 entries)."""
    if stride < 1 or stride >= T + 1:
        raise ValueError(f"stride must be in 1..{T}, got {stride}")
    if start is None:
        start = (T - 1) // stride * stride
    return list(range(start, -1, -stride))


def evenly_spaced_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` descending timesteps from T-1 down to 0, evenly spaced (for DDIM and short DDPM)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in 1..{T}, got {steps}")
    ks = torch.linspace(T - 1, 0, steps).round().long().tolist()
    return sorted(set(ks), reverse=True)
