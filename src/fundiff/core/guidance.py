"""Classifier-free guidance as a wrapper over two bound denoisers (spec.md 1.6)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fundiff.core.model import EpsFn, Prediction


def cfg(eps_cond: EpsFn, eps_uncond: EpsFn, gamma: float) -> EpsFn:
    """eps = eps_u + gamma (eps_c - eps_u); the conditional variance is kept (spec 1.6)."""

    def guided(x_t: torch.Tensor, k: torch.Tensor) -> Prediction:
        c, u = eps_cond(x_t, k), eps_uncond(x_t, k)
        return Prediction(u.eps + gamma * (c.eps - u.eps), c.variance)

    return guided


def limited_interval(guided: EpsFn, plain: EpsFn, active: Callable[[torch.Tensor], bool]) -> EpsFn:
    """Guidance in a limited interval (Kynkaenniemi et al. 2024): the guided estimate at steps where
    ``active(k)`` holds, the plain conditional one elsewhere (one net call instead of two there)."""

    def fn(x_t: torch.Tensor, k: torch.Tensor) -> Prediction:
        return guided(x_t, k) if active(k) else plain(x_t, k)

    return fn
