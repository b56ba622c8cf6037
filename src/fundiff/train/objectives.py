"""Training objectives (spec.md Part B): single-step denoising, DDPM noise prediction, flow matching.

Each draws its randomness for the whole batch; with ``shard`` (a process's part of the batch, see
``train.distributed``) it runs the net on that part only and returns that part's share of the batch mean (the sum of
its per-element losses over the whole batch's element count), so the shares of all processes add up to the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fundiff.core.schedule import Schedule, forward_process
from fundiff.nets.unet import UNet


def _randn(like: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """N(0, I) noise drawn on the CPU from ``g`` (the same numbers on any device), moved to like's device."""
    return torch.randn(like.shape, generator=g).to(like.device)


def one_hot_with_dropout(labels: torch.Tensor, p_uncond: float, g: torch.Generator, k: int = 10) -> torch.Tensor:
    """c = one_hot(labels), set to the zero vector with probability p_uncond (for CFG)."""
    c = F.one_hot(labels, k).float()
    keep = (torch.rand(labels.shape[0], generator=g) >= p_uncond).float().to(labels.device)
    return c * keep[:, None]


def _mse(pred: torch.Tensor, target: torch.Tensor, whole: int | None) -> torch.Tensor:
    """The mean squared error, or with ``whole`` (the batch size) this shard's share of the whole batch's mean."""
    if whole is None:
        return F.mse_loss(pred, target)
    return F.mse_loss(pred, target, reduction="sum") / (whole * target[0].numel())


def denoiser_loss(net: UNet, x: torch.Tensor, sigma: float, pure_noise: bool, g: torch.Generator,
                  shard: slice | None = None) -> torch.Tensor:
    """|| D(z) - x ||^2 with z = x + sigma eps (or z = eps for "denoising pure noise")."""
    eps = _randn(x, g)
    whole = None if shard is None else x.shape[0]
    if shard is not None:
        x, eps = x[shard], eps[shard]
    z = eps if pure_noise else x + sigma * eps
    return _mse(net(z).float(), x, whole)


MIN_SNR_GAMMA = 5.0
"""gamma of min-SNR-gamma weighting (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting")."""


def min_snr_weight(abar: torch.Tensor, gamma: float = MIN_SNR_GAMMA) -> torch.Tensor:
    """w_t = min(SNR_t, gamma) / SNR_t with SNR_t = abar_t / (1 - abar_t): the eps-loss weight of min-SNR-gamma."""
    snr = abar / (1 - abar)
    return snr.clamp(max=gamma) / snr


def _weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                  whole: int | None = None) -> torch.Tensor:
    if weight is None:
        return _mse(pred, target, whole)
    per_image = (pred - target).pow(2).flatten(1).mean(1)
    weighted = weight.to(per_image.device) * per_image
    return weighted.mean() if whole is None else weighted.sum() / whole


def ddpm_loss(net: UNet, x: torch.Tensor, c: torch.Tensor | None, schedule: Schedule,
              g: torch.Generator, weighting: str = "uniform", shard: slice | None = None) -> torch.Tensor:
    """E_t w_t || eps - eps_theta(x_t, t/T, c) ||^2, t ~ U{1..T}, x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps;
    w_t = 1 ("uniform", the spec) or min(SNR_t, 5) / SNR_t ("min-snr")."""
    k = torch.randint(0, schedule.T, (x.shape[0],), generator=g)
    eps = _randn(x, g)
    whole = None if shard is None else x.shape[0]
    if shard is not None:
        x, k, eps, c = x[shard], k[shard], eps[shard], None if c is None else c[shard]
    x_t = forward_process(x, k, schedule, eps)
    weight = min_snr_weight(schedule.abar(k).float()) if weighting == "min-snr" else None
    return _weighted_mse(net(x_t, schedule.model_time(k).to(x.device), c).float(), eps, weight, whole)


def flow_times(n: int, g: torch.Generator, sampling: str = "uniform") -> torch.Tensor:
    """t ~ U[0, 1] (the spec) or logit-normal, t = sigmoid(z), z ~ N(0, 1) (Esser et al. 2024, SD3), which puts
    more of the training on the middle of the path."""
    if sampling == "logit-normal":
        return torch.sigmoid(torch.randn(n, generator=g))
    return torch.rand(n, generator=g)


def flow_loss(net: UNet, x1: torch.Tensor, c: torch.Tensor | None, g: torch.Generator,
              time_sampling: str = "uniform", shard: slice | None = None) -> torch.Tensor:
    """|| (x_1 - x_0) - u_theta(x_t, t, c) ||^2 with x_t = (1 - t) x_0 + t x_1, x_0 ~ N(0, I), t from
    :func:`flow_times`."""
    x0 = _randn(x1, g)
    t = flow_times(x1.shape[0], g, time_sampling).to(x1.device)
    whole = None if shard is None else x1.shape[0]
    if shard is not None:
        x1, x0, t, c = x1[shard], x0[shard], t[shard], None if c is None else c[shard]
    tb = t[:, None, None, None]
    x_t = (1 - tb) * x0 + tb * x1
    return _mse(net(x_t, t, c).float(), x1 - x0, whole)
