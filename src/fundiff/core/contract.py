"""The denoiser contract (design.md): ``eps_fn(x_t, k) -> Prediction`` for noise-prediction models and
``velocity_fn(x_t, t) -> Velocity`` for flow-matching models.

Wrappers (guidance, views, frequency bands) combine predictions linearly, whatever their kind, through
``value`` and ``with_value``; the samplers' update functions read ``eps`` or ``v``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

Condition = str | int | None
"""What a denoiser is bound to: a prompt (str), a class (int), or None for the unconditional one."""


@dataclass
class Prediction:
    """A noise-prediction model's output at one step: eps_hat (B,C,H,W) and, optionally, its learned
    variance channels v in [-1, 1] (DeepFloyd's learned range)."""

    eps: torch.Tensor
    variance: torch.Tensor | None = None

    @property
    def value(self) -> torch.Tensor:
        return self.eps

    def with_value(self, value: torch.Tensor, variance: torch.Tensor | None) -> Prediction:
        return Prediction(value, variance)


@dataclass
class Velocity:
    """A flow-matching model's output: the velocity u_theta(x_t, t) = d x_t / dt (B,C,H,W), with
    x_t = (1 - t) x_0 + t x_1 from noise x_0 (t = 0) to data x_1 (t = 1)."""

    v: torch.Tensor
    variance: None = None

    @property
    def value(self) -> torch.Tensor:
        return self.v

    def with_value(self, value: torch.Tensor, variance: torch.Tensor | None = None) -> Velocity:
        return Velocity(value)


Output = Prediction | Velocity


class EpsFn(Protocol):
    """A noise-prediction denoiser bound to its conditioning: x_t (B,C,H,W), k (B,) long timestep indices."""

    def __call__(self, x_t: torch.Tensor, k: torch.Tensor) -> Prediction: ...


class VelocityFn(Protocol):
    """A flow-matching model bound to its conditioning: x_t (B,C,H,W), t (B,) float times in [0, 1]."""

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> Velocity: ...


Denoiser = EpsFn | VelocityFn


Joint = Callable[[Sequence[torch.Tensor], torch.Tensor], list[Output]]
"""Several denoisers at one level, denoiser i on input i: ``joint([x_1, ..., x_m], level) -> [out_1, ..., out_m]``
(an illusion's estimates; a model may compute them in fewer, larger net calls)."""


def one_by_one(fns: Sequence[Denoiser]) -> Joint:
    """The joint of ``fns`` called one after the other, each on its own input."""

    def joint(xs: Sequence[torch.Tensor], level: torch.Tensor) -> list[Output]:
        return [fn(x, level if len(level) == len(x) else level[:1].expand(len(x)))
                for fn, x in zip(fns, xs, strict=True)]

    return joint


def as_joint(estimates: Sequence[Denoiser] | Joint) -> Joint:
    """A joint as it is; a sequence of denoisers as :func:`one_by_one`."""
    return estimates if callable(estimates) else one_by_one(estimates)


def split_output(out: Output, sizes: Sequence[int]) -> list[Output]:
    """One batched estimate cut back into the estimates of consecutive inputs of ``sizes`` images."""
    values = out.value.split(list(sizes))
    variances = out.variance.split(list(sizes)) if out.variance is not None else [None] * len(sizes)
    return [out.with_value(v, var) for v, var in zip(values, variances, strict=True)]
