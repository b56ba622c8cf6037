"""The model every command, the report and the Python API work with: a bound-denoiser factory, the process it
was trained on, its device and its own sampling defaults (from its card)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from fundiff.core.contract import Condition, Denoiser, EpsFn, Prediction, Velocity, VelocityFn
from fundiff.core.guidance import Classifier
from fundiff.core.sampling import Sampling
from fundiff.core.schedule import FlowPath, Schedule
from fundiff.errors import UserError

__all__ = ["Condition", "DiffusionModel", "EpsFn", "Prediction", "Sampling", "Velocity", "VelocityFn"]


@dataclass(eq=False)
class DiffusionModel:
    """A pixel-space diffusion model as fundiff's operations see it.

    ``bind(condition)`` returns the model's denoiser for a condition (None: unconditional): an
    :class:`EpsFn` when ``schedule`` is a DDPM :class:`Schedule`, a :class:`VelocityFn` when it is a
    :class:`FlowPath`. ``conditioning`` is "class", "prompt" or "none"; ``value_range`` is the data range
    of x_0 ((0, 1) for fundiff's digits, (-1, 1) for DeepFloyd and most diffusers models);
    ``light_on_dark`` says its images are light strokes on a dark ground (MNIST), which image loading uses
    to orient drawings; ``mnist_framing`` that a drawing given to it is framed as MNIST framed its digits (the
    ink fit into 20 of 28 pixels; the default of ``edit --fit``): digit models, not Fashion-MNIST's clothes,
    which fill the frame. A class is its number or, when the model has ``class_names``, its name in any case,
    one of ``class_aliases`` (lower case -> class), or either with a plural s. ``sampling`` holds every
    sampling default from the model's card; ``illusion_sampling`` (None: the same) the defaults of anagrams and
    hybrids, which read better with other settings than plain samples (README, "Illusions"), and
    ``hybrid_sampling`` (None: the illusion ones) those of hybrids where they differ. ``classifier`` is
    the model's noise-aware classifier ((x_t, level) -> class logits) when it has one, for classifier guidance.
    """

    name: str
    schedule: Schedule | FlowPath
    image_size: int
    channels: int
    value_range: tuple[float, float]
    conditioning: str
    bind: Callable[[Condition], Denoiser]
    sampling: Sampling
    illusion_sampling: Sampling | None = None
    hybrid_sampling: Sampling | None = None
    classifier: Classifier | None = None
    learned_variance: bool = False
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    class_aliases: dict[str, int] = field(default_factory=dict)
    light_on_dark: bool = False
    mnist_framing: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    info: dict = field(default_factory=dict)

    @property
    def is_flow(self) -> bool:
        return isinstance(self.schedule, FlowPath)

    def illusions(self) -> Sampling:
        """The sampling defaults of anagrams and hybrids (the plain ones when the card gives none)."""
        return self.illusion_sampling or self.sampling

    def hybrids(self) -> Sampling:
        """The sampling defaults of hybrids (the illusion ones when the card gives none)."""
        return self.hybrid_sampling or self.illusions()

    @property
    def default_guidance(self) -> float:
        return self.sampling.guidance

    def __repr__(self) -> str:
        kind = "flow-matching" if self.is_flow else "DDPM"
        cond = {"class": f"{self.num_classes}-class", "prompt": "text", "none": "unconditional"}[self.conditioning]
        return (f"DiffusionModel({self.name!r}: {cond} {kind}, {self.channels}x{self.image_size}x{self.image_size}, "
                f"T={self.schedule.T}, {self.device})")

    def denoiser(self, condition: Condition = None) -> Denoiser:
        """The bound denoiser for ``condition`` (checked first)."""
        return self.bind(self.check_condition(condition))

    def check_condition(self, condition: Condition) -> Condition:
        """A class for class models (its number or name), a prompt for prompt models, None for any."""
        if condition is None:
            return None
        if isinstance(condition, list | tuple):
            if self.conditioning != "class":
                raise UserError(f"model {self.name} takes one condition for all images, not one per image")
            return [self._check_class(c) for c in condition]
        if self.conditioning == "none":
            raise UserError(f"model {self.name} is unconditional; it takes no --class or --prompt")
        if self.conditioning == "class":
            return self._check_class(condition)
        if not isinstance(condition, str):
            raise UserError(f"model {self.name} takes a text --prompt, not a class")
        return condition

    def _check_class(self, condition: Condition) -> int:
        text = str(condition).strip()
        named = self._class_of_name(text)
        if named is not None:
            return named
        if not (text.isascii() and text.lstrip("-").isdigit()):
            known = f" or a name ({', '.join(self.class_names)})" if self.class_names else ""
            raise UserError(f"model {self.name} is class-conditioned: give a class 0-{self.num_classes - 1}{known}, "
                            f"not the prompt {condition!r}")
        if not 0 <= int(text) < self.num_classes:
            raise UserError(f"class {text} is outside 0-{self.num_classes - 1} for model {self.name}")
        return int(text)

    def _class_of_name(self, text: str) -> int | None:
        """The class a name means: a class name (any case), else an alias, else either without a plural s/es."""
        known = {**{k.lower(): c for k, c in self.class_aliases.items()},
                 **{n.lower(): c for c, n in enumerate(self.class_names)}}
        word = " ".join(text.lower().split())
        for key in (word, word.removesuffix("s"), word.removesuffix("es")):
            if key in known:
                return known[key]
        return None

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
        return {"name": self.name, "process": "flow" if self.is_flow else "ddpm", "T": self.schedule.T,
                "image_size": self.image_size, "channels": self.channels, "value_range": list(self.value_range),
                "learned_variance": self.learned_variance, "conditioning": self.conditioning,
                "class_names": list(self.class_names), "sampling": self.sampling.to_dict(),
                "illusion_sampling": self.illusions().to_dict(), "hybrid_sampling": self.hybrids().to_dict(),
                "device": str(self.device), **self.info}
