"""Adapter: a trained fundiff UNet (DDPM or flow matching, class- or time-conditioned) as a DiffusionModel.

The model's sampling defaults come from the recipe it was trained with (its card): the DDPM update with the
beta variance (spec Part B) over all T steps, x0_hat clamped when the recipe says so, CFG at the recipe's
gamma on its guidance interval; Euler over T steps for flow models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fundiff.core.contract import Condition, Denoiser, EpsFn, Prediction, Velocity, VelocityFn
from fundiff.core.model import DiffusionModel
from fundiff.core.sampling import Sampling
from fundiff.core.schedule import FlowPath, Schedule, linear_schedule
from fundiff.errors import UserError
from fundiff.nets.unet import UNet
from fundiff.train.data import CLASS_ALIASES, CLASS_NAMES
from fundiff.train.recipes import Recipe


def class_vector(labels: torch.Tensor | None, batch: int, num_classes: int = 10) -> torch.Tensor:
    """One-hot rows for ``labels`` (B,) or one label for the whole batch (1,), or zero rows (the
    null class) when labels is None."""
    if labels is None:
        return torch.zeros(batch, num_classes)
    return F.one_hot(labels.long(), num_classes).float().expand(batch, -1)


def _net_call(net: UNet, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None,
              precision: str) -> torch.Tensor:
    """net(x_t, t, c) without gradients, under bf16 autocast for ``precision="bf16"``; float32 out."""
    cond = net.config.conditioning
    c = class_vector(labels, x_t.shape[0], net.config.num_classes).to(x_t.device) if cond == "class" else None
    with torch.no_grad(), torch.autocast(x_t.device.type, torch.bfloat16, enabled=precision == "bf16"):
        out = net(x_t.contiguous(memory_format=torch.channels_last), t.to(x_t.device) if cond != "none" else None, c)
    return out.float().contiguous()


def unet_denoiser(net: UNet, schedule: Schedule, labels: torch.Tensor | None = None,
                  precision: str = "fp32") -> EpsFn:
    """eps_fn(x_t, k) = net(x_t, t / T, c) with the spec's t = k + 1 (DDPM nets)."""

    def eps_fn(x_t: torch.Tensor, k: torch.Tensor) -> Prediction:
        return Prediction(_net_call(net, x_t, schedule.model_time(k.cpu()), labels, precision))

    return eps_fn


def unet_velocity(net: UNet, labels: torch.Tensor | None = None, precision: str = "fp32") -> VelocityFn:
    """velocity_fn(x_t, t) = u_theta(x_t, t, c) (flow-matching nets, t in [0, 1])."""

    def velocity_fn(x_t: torch.Tensor, t: torch.Tensor) -> Velocity:
        return Velocity(_net_call(net, x_t, t.float(), labels, precision))

    return velocity_fn


def recipe_process(recipe: Recipe) -> Schedule | FlowPath:
    """The DDPM schedule a recipe trained with, or its flow path on T steps."""
    if recipe.objective == "flow":
        return FlowPath(recipe.T)
    return linear_schedule(recipe.T, recipe.beta_start, recipe.beta_end)


def recipe_sampling(recipe: Recipe) -> Sampling:
    """The sampling defaults of a recipe's card: its sampler (every one of T steps, the spec's beta variance (DDPM)
    or Euler (flow); or DPM-Solver++(2M) on the recipe's solver steps), x0_hat clamped as the recipe says, CFG gamma
    and interval from the recipe."""
    is_class = recipe.model == "class"
    flow = recipe.objective == "flow"
    common = dict(guidance=recipe.guidance if is_class else 1.0, guidance_interval=tuple(recipe.guidance_interval))
    if recipe.sampler == "dpmpp-2m":
        return Sampling(sampler="dpmpp-2m", steps=recipe.solver_steps, clip=bool(recipe.clip_x0), **common)
    return Sampling(sampler="euler" if flow else "ddpm", stride=1, variance=None if flow else "beta",
                    clip=bool(recipe.clip_x0) and not flow, **common)


ILLUSION_STEPS, ILLUSION_GUIDANCE = 50, 10.0
"""Anagrams and hybrids of fundiff's 28 px nets: 50 evenly spaced steps with the posterior variance (no noisy
background), CFG 10 at every noise level (measured on all 90 digit pairs: README, "Illusions")."""


def recipe_illusion_sampling(recipe: Recipe) -> Sampling:
    """The illusion defaults of a recipe's net: :data:`ILLUSION_STEPS` steps (DDPM with the posterior variance
    and x0_hat clamped, or Euler), CFG :data:`ILLUSION_GUIDANCE` over the whole trajectory for class nets."""
    flow = recipe.objective == "flow"
    return Sampling(sampler="euler" if flow else "ddpm", steps=ILLUSION_STEPS, variance=None if flow else "posterior",
                    clip=not flow, guidance=ILLUSION_GUIDANCE if recipe.model == "class" else 1.0,
                    guidance_interval=(0.0, 1.0))


def _labels(condition: Condition | Sequence[Condition]) -> torch.Tensor | None:
    if condition is None:
        return None
    if isinstance(condition, list | tuple):
        return torch.tensor([int(c) for c in condition])
    return torch.tensor([int(condition)])


def fundiff_model(net: UNet, recipe: Recipe, name: str, device: torch.device, info: dict | None = None
                  ) -> DiffusionModel:
    """A trained fundiff time or class net as a :class:`DiffusionModel` on [0, 1] images, in the recipe's
    precision (bf16 autocast for fundiff's default recipe). Class nets bind a class (or a list, one per image;
    None: the null class, eps_u of CFG), by number or by name (Fashion-MNIST's "sneaker", "ankle boot"; an image
    folder's subfolder names); time nets are unconditional. Both digit sets are light on dark; only digits take MNIST
    framing of drawings."""
    if recipe.model == "denoiser":
        raise UserError(f"{name} is a single-step denoiser: it cannot sample; train a time or class model "
                        "(its figures: fundiff figures RUN)")
    process = recipe_process(recipe)
    is_class = net.config.conditioning == "class"

    def bind(condition: Condition | Sequence[Condition]) -> Denoiser:
        labels = _labels(condition) if is_class else None
        if isinstance(process, FlowPath):
            return unet_velocity(net, labels, recipe.precision)
        return unet_denoiser(net, process, labels, recipe.precision)

    names = recipe.class_names or CLASS_NAMES.get(recipe.data, ())
    digit_sets = recipe.data in ("mnist", "fashion")
    return DiffusionModel(name=name, schedule=process, image_size=net.config.image_size,
                          channels=net.config.in_channels,
                          value_range=(0.0, 1.0), conditioning="class" if is_class else "none", bind=bind,
                          sampling=recipe_sampling(recipe), illusion_sampling=recipe_illusion_sampling(recipe),
                          num_classes=net.config.num_classes if is_class else 0,
                          class_names=tuple(names) if is_class else (),
                          class_aliases=dict(CLASS_ALIASES.get(recipe.data, {})) if is_class else {},
                          light_on_dark=digit_sets, mnist_framing=recipe.data == "mnist", device=torch.device(device),
                          info={"kind": f"fundiff-unet-{recipe.objective}", "recipe": recipe.to_dict(), **(info or {})})
