"""The denoiser contract (design.md): ``eps_fn(x_t, k) -> Prediction``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Prediction:
    """A model's output at one step: the noise (or velocity) estimate and, optionally, its
    learned variance channels v in [-1, 1] (DeepFloyd's learned range)."""

    eps: torch.Tensor
    variance: torch.Tensor | None = None


class EpsFn(Protocol):
    """A denoiser bound to its conditioning: x_t (B,C,H,W), k (B,) timestep indices."""

    def __call__(self, x_t: torch.Tensor, k: torch.Tensor) -> Prediction: ...
