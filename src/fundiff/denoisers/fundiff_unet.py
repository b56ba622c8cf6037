"""Adapter: a fundiff UNet bound to a class (or none) as a denoiser (design.md contract)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fundiff.denoisers.base import EpsFn, Prediction
from fundiff.nets.unet import UNet
from fundiff.schedule import Schedule


def class_vector(labels: torch.Tensor | None, batch: int, num_classes: int = 10) -> torch.Tensor:
    """One-hot rows for ``labels`` (B,), or zero rows (the null class) when labels is None."""
    if labels is None:
        return torch.zeros(batch, num_classes)
    return F.one_hot(labels.long(), num_classes).float()


def unet_denoiser(net: UNet, schedule: Schedule | None, labels: torch.Tensor | None = None) -> EpsFn:
    """eps_fn(x_t, k) = net(x_t, t, c): DDPM nets see t = (k + 1) / T; flow nets (schedule None)
    see the continuous time k in [0, 1] and return the velocity in ``Prediction.eps``."""
    cond = net.config.conditioning

    def eps_fn(x_t: torch.Tensor, k: torch.Tensor) -> Prediction:
        t = (k.float() if schedule is None else schedule.model_time(k.cpu())).to(x_t.device)
        c = class_vector(labels, x_t.shape[0]).to(x_t.device) if cond == "class" else None
        with torch.no_grad():
            out = net(x_t.contiguous(memory_format=torch.channels_last), t if cond != "none" else None, c)
        return Prediction(out.float().contiguous())

    return eps_fn
