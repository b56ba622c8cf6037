"""Classifier-free guidance as a wrapper over two bound denoisers (spec.md 1.6)."""

from __future__ import annotations

import torch

from fundiff.denoisers.base import EpsFn, Prediction


def cfg(eps_cond: EpsFn, eps_uncond: EpsFn, gamma: float) -> EpsFn:
    """eps = eps_u + gamma (eps_c - eps_u); the conditional variance is kept (spec 1.6)."""

    def guided(x_t: torch.Tensor, k: torch.Tensor) -> Prediction:
        c, u = eps_cond(x_t, k), eps_uncond(x_t, k)
        return Prediction(u.eps + gamma * (c.eps - u.eps), c.variance)

    return guided
