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

    def levels(self, timesteps: list[int]) -> list[int]:
        """The loop's grid: the descending timesteps, then -1 (the clean image)."""
        return [*timesteps, -1]

    def noise_level(self, k: int) -> float:
        """Where timestep index k lies between data (0) and noise (1): t / T = (k + 1) / T."""
        return (k + 1) / self.T

    def forward(self, x0: torch.Tensor, k: int, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at timestep index k (one k for the batch)."""
        return forward_process(x0, torch.full((x0.shape[0],), k, device=x0.device), self, eps)

    def x0_hat(self, x_t: torch.Tensor, pred, k: int) -> torch.Tensor:
        """x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)."""
        abar = self.abar(k).to(x_t.dtype).to(x_t.device)
        return (x_t - (1 - abar).sqrt() * pred.eps) / abar.sqrt()

    def is_clean(self, k: int) -> bool:
        return k < 0

    def to_dict(self) -> dict:
        return {"betas": self.betas.tolist()}


@dataclass(frozen=True)
class FlowPath:
    """The flow-matching path x_t = (1 - t) x_0 + t x_1 from noise x_0 (t = 0) to data x_1 (t = 1), on the grid
    of T timestep indices that Part A uses for every model: index k is time t = (T - 1 - k) / T, so k = T - 1 is
    pure noise, and the clean image (k = -1) is t = 1. Full-grid sampling is the spec's Euler loop,
    x <- x + (1 / T) u(x, i / T), i = 0 .. T - 1."""

    T: int  # noqa: N815 - the paper's name

    def time(self, k: int) -> float:
        """t = (T - 1 - k) / T."""
        return (self.T - 1 - k) / self.T

    def levels(self, timesteps: list[int]) -> list[float]:
        """The loop's grid: times t for the descending timestep indices, then 1.0 (the data)."""
        return [self.time(k) for k in timesteps] + [1.0]

    def noise_level(self, t: float) -> float:
        """1 - t: 1 at pure noise, 0 at the data (the same scale as a DDPM's t / T)."""
        return 1.0 - t

    def forward(self, x0: torch.Tensor, t: float, eps: torch.Tensor) -> torch.Tensor:
        """x_t = (1 - t) eps + t x_0 at time t (x_0 here is the clean image, the path's x_1)."""
        return (1 - t) * eps + t * x0

    def x0_hat(self, x_t: torch.Tensor, pred, t: float) -> torch.Tensor:
        """The clean-image estimate x_t + (1 - t) u(x_t, t)."""
        return x_t + (1 - t) * pred.v

    def is_clean(self, t: float) -> bool:
        return t >= 1.0

    def to_dict(self) -> dict:
        return {"kind": "flow", "T": self.T}


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


def solver_timesteps(T: int, steps: int) -> list[int]:
    """diffusers' "linspace" spacing for ``steps`` solver steps: round(linspace(0, T - 1, steps + 1)), descending,
    without its last entry 0 (the final step goes from about (T - 1) / steps straight to the clean image)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in 1..{T}, got {steps}")
    ks = torch.linspace(0, T - 1, steps + 1, dtype=torch.float64).round().long().flip(0)[:-1].tolist()
    return sorted(set(ks), reverse=True)
