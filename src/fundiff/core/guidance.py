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


Classifier = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(x_t, level) -> class logits of a noise-aware classifier p_phi(y | x_t, t)."""


GradLogProb = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(x_t, level) -> grad_x log p_phi(y | x_t, t) for fixed labels y."""


def log_prob_gradient(classifier: Classifier, labels: torch.Tensor) -> GradLogProb:
    """(x_t, level) -> grad_x log p_phi(labels | x_t, t), each image's gradient of its own label's log-softmax (one
    label: the same for every image)."""

    def grad(x_t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x_t.detach().float().requires_grad_(True)
            want = labels.to(x.device).reshape(-1).expand(len(x)) if labels.numel() == 1 else labels.to(x.device)
            logp = torch.log_softmax(classifier(x, level).float(), 1).gather(1, want[:, None]).sum()
            return torch.autograd.grad(logp, x)[0].to(x_t.dtype)

    return grad


def classifier_guidance(denoiser: Denoiser, grad_log_prob: GradLogProb, scale: float,
                        abar: Callable[[torch.Tensor], torch.Tensor]) -> Denoiser:
    """Classifier guidance (Dhariwal and Nichol 2021, eq. 14): eps' = eps - s sqrt(1 - abar_t) grad_x log p_phi(y |
    x_t, t), a noise prediction pushed toward images the classifier reads as y; ``denoiser`` when s = 0."""
    if scale == 0:
        return denoiser

    def fn(x_t: torch.Tensor, level: torch.Tensor) -> Output:
        p = denoiser(x_t, level)
        return p.with_value(p.value - classifier_shift(x_t, level, grad_log_prob, scale, abar), p.variance)

    return fn


def classifier_shift(x_t: torch.Tensor, level: torch.Tensor, grad_log_prob: GradLogProb, scale: float,
                     abar: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """s sqrt(1 - abar_t) grad_x log p_phi(y | x_t, t): what classifier guidance takes off a noise prediction."""
    a = abar(level).to(x_t.dtype).reshape(-1, 1, 1, 1)
    return scale * (1 - a).sqrt() * grad_log_prob(x_t, level)
