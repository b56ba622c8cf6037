"""The denoiser contract (design.md): ``eps_fn(x_t, k) -> Prediction``, and the model behind it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from fundiff.core.schedule import Schedule
from fundiff.errors import UserError

Condition = str | int | None
"""What a denoiser is bound to: a prompt (str), a class (int), or None for the unconditional one."""


@dataclass
class Prediction:
    """A model's output at one step: the noise (or velocity) estimate and, optionally, its
    learned variance channels v in [-1, 1] (DeepFloyd's learned range)."""

    eps: torch.Tensor
    variance: torch.Tensor | None = None


class EpsFn(Protocol):
    """A denoiser bound to its conditioning: x_t (B,C,H,W), k (B,) timestep indices."""

    def __call__(self, x_t: torch.Tensor, k: torch.Tensor) -> Prediction: ...


@dataclass
class DiffusionModel:
    """A pixel-space epsilon-prediction model as fundiff's Part A operations see it.

    ``bind(condition)`` returns the model's :class:`EpsFn` for a condition (None: unconditional).
    ``conditioning`` is "class", "prompt" or "none"; ``value_range`` is the data range of x_0
    ((0, 1) for fundiff's digits, (-1, 1) for DeepFloyd and most diffusers models);
    ``light_on_dark`` says its images are light strokes on a dark ground (MNIST), which image
    loading uses to orient drawings.
    """

    name: str
    schedule: Schedule
    image_size: int
    channels: int
    value_range: tuple[float, float]
    learned_variance: bool
    conditioning: str
    bind: Callable[[Condition], EpsFn]
    num_classes: int = 0
    default_guidance: float = 7.0
    light_on_dark: bool = False
    info: dict = field(default_factory=dict)

    def denoiser(self, condition: Condition = None) -> EpsFn:
        """The bound denoiser eps_fn(x_t, k) for ``condition`` (checked first)."""
        return self.bind(self.check_condition(condition))

    def check_condition(self, condition: Condition) -> Condition:
        """A class for class models (a digit string counts), a prompt for prompt models, None for any."""
        if condition is None:
            return None
        if self.conditioning == "none":
            raise UserError(f"model {self.name} is unconditional; it takes no --class or --prompt")
        if self.conditioning == "class":
            return self._check_class(condition)
        if not isinstance(condition, str):
            raise UserError(f"model {self.name} takes a text --prompt, not a class")
        return condition

    def _check_class(self, condition: Condition) -> int:
        text = str(condition).strip()
        if not text.lstrip("-").isdigit():
            raise UserError(f"model {self.name} is class-conditioned: give a class 0-{self.num_classes - 1}, "
                            f"not the prompt {condition!r}")
        if not 0 <= int(text) < self.num_classes:
            raise UserError(f"class {text} is outside 0-{self.num_classes - 1} for model {self.name}")
        return int(text)

    def to_model_range(self, x01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the model's data range."""
        lo, hi = self.value_range
        return x01 * (hi - lo) + lo

    def to_unit_range(self, x: torch.Tensor) -> torch.Tensor:
        """The model's data range -> [0, 1] (not clamped)."""
        lo, hi = self.value_range
        return (x - lo) / (hi - lo)

    def describe(self) -> dict:
        """What a run records about its model."""
        return {"name": self.name, "T": self.schedule.T, "image_size": self.image_size, "channels": self.channels,
                "value_range": list(self.value_range), "learned_variance": self.learned_variance,
                "conditioning": self.conditioning, "default_guidance": self.default_guidance, **self.info}
