"""Adapter: a fundiff UNet bound to a class (or none) as a denoiser (design.md contract)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fundiff.core.model import Condition, DiffusionModel, EpsFn, Prediction
from fundiff.core.schedule import Schedule, linear_schedule
from fundiff.errors import UserError
from fundiff.nets.unet import UNet
from fundiff.train.recipes import Recipe


def class_vector(labels: torch.Tensor | None, batch: int, num_classes: int = 10) -> torch.Tensor:
    """One-hot rows for ``labels`` (B,) or one label for the whole batch (1,), or zero rows (the
    null class) when labels is None."""
    if labels is None:
        return torch.zeros(batch, num_classes)
    return F.one_hot(labels.long(), num_classes).float().expand(batch, -1)


def unet_denoiser(net: UNet, schedule: Schedule | None, labels: torch.Tensor | None = None,
                  precision: str = "fp32") -> EpsFn:
    """eps_fn(x_t, k) = net(x_t, t, c): DDPM nets see t = (k + 1) / T; flow nets (schedule None)
    see the continuous time k in [0, 1] and return the velocity in ``Prediction.eps``. With
    ``precision="bf16"`` the net runs under bf16 autocast; the sampler's arithmetic stays float32."""
    cond = net.config.conditioning

    def eps_fn(x_t: torch.Tensor, k: torch.Tensor) -> Prediction:
        t = (k.float() if schedule is None else schedule.model_time(k.cpu())).to(x_t.device)
        c = class_vector(labels, x_t.shape[0], net.config.num_classes).to(x_t.device) if cond == "class" else None
        with torch.no_grad(), torch.autocast(x_t.device.type, torch.bfloat16, enabled=precision == "bf16"):
            out = net(x_t.contiguous(memory_format=torch.channels_last), t if cond != "none" else None, c)
        return Prediction(out.float().contiguous())

    return eps_fn


def digit_model(net: UNet, recipe: Recipe, name: str, info: dict | None = None) -> DiffusionModel:
    """A trained fundiff DDPM net (class- or time-conditioned) as a :class:`DiffusionModel` on [0, 1] images.

    Class nets bind a digit (or None: the null class, eps_u of CFG); time nets are unconditional.
    The net runs in the recipe's precision (bf16 autocast for fundiff's default recipe).
    """
    if recipe.model == "denoiser":
        raise UserError(f"{name} is a single-step denoiser; Part A operations need a time or class model")
    if recipe.objective != "ddpm":
        raise UserError(f"{name} is a flow-matching model; Part A operations need a DDPM (noise-schedule) model")
    schedule = linear_schedule(recipe.T, recipe.beta_start, recipe.beta_end)
    is_class = net.config.conditioning == "class"

    def bind(condition: Condition) -> EpsFn:
        labels = None if condition is None else torch.tensor([int(condition)])
        return unet_denoiser(net, schedule, labels, recipe.precision)

    return DiffusionModel(name=name, schedule=schedule, image_size=28, channels=net.config.in_channels,
                          value_range=(0.0, 1.0), learned_variance=False,
                          conditioning="class" if is_class else "none", bind=bind,
                          num_classes=net.config.num_classes if is_class else 0,
                          default_guidance=recipe.guidance if is_class else 1.0, light_on_dark=True,
                          info={"kind": "fundiff-unet", "recipe": recipe.to_dict(), **(info or {})})
