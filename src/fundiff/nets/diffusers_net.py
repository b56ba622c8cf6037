"""A diffusers ``UNet2DModel`` behind fundiff's net contract (``fundiff train --net diffusers``), for larger images.

:class:`DiffusersUNet` takes and returns what :class:`fundiff.nets.unet.UNet` does: ``forward(x, t, c)`` with x
(B,C,S,S) images in [0, 1] (noised), t (B,) normalised time in [0, 1] (DDPM: (k + 1) / T; flow: continuous), c (B,K)
one-hot rows (an all-zero row: no class, for CFG); it returns eps (DDPM) or the velocity (flow). ``net.config`` is a
:class:`DiffusersUNetConfig`, a :class:`~fundiff.nets.unet.UNetConfig` with the same fields, so every caller that
reads ``net.config.conditioning`` / ``.num_classes`` / ``.in_channels`` / ``.image_size`` works unchanged; its
``to_dict()`` adds ``"net": "diffusers"`` and the UNet2DModel keyword arguments (``"unet2d"``), which is what a run's
records say builds the net.

The UNet2DModel for image size S and width W (:func:`unet2d_kwargs`):

- depth = :func:`~fundiff.nets.unet.unet_depth` (S) downsamplings, as fundiff's UNet takes (28 and 32 px: 2, 64 px:
  3, 128 px: 4), so the bottom is 4-8 px and every size fundiff's UNet builds for halves cleanly; depth + 1 blocks
  with ``block_out_channels`` (W, 2W, 2W, 4W, 4W, ...): (W, 2W, 2W) at 28-32 px, (W, 2W, 2W, 4W) at 64 px;
- ``layers_per_block=2``; self-attention only at the lowest resolution: the last down block is an
  ``AttnDownBlock2D``, the first up block an ``AttnUpBlock2D`` (and the mid block's attention), the others plain
  ``DownBlock2D`` / ``UpBlock2D``; ``attention_head_dim`` 8 when it divides the bottom width, else one head;
- ``norm_num_groups``: the largest divisor of W that is at most 32 (every block width is a multiple of W);
- time: the sinusoidal embedding of the *float* timestep ``t * 1000`` (``flip_sin_to_cos``, ``freq_shift=0``), the
  same for DDPM ((k + 1) / T * 1000) and flow (continuous t); a net without time input (a denoiser) is given t = 0;
- class nets: ``num_class_embeds = K + 1``, the label of a row of c is its argmax, and index K is the null class
  (all-zero rows: CFG's unconditional estimate, class dropout in training);
- the output is the model's ``.sample``; no input centring (``center_input_sample=False``): fundiff's data range.

diffusers takes seconds to import, so it is imported only when a net is built (not by importing this module).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fundiff.errors import UserError
from fundiff.nets.unet import UNetConfig

TIME_SCALE = 1000.0
"""UNet2DModel's timestep = t * TIME_SCALE (a float; its sinusoidal embedding is made for 0-1000)."""


def norm_groups(width: int) -> int:
    """The largest divisor of ``width`` that is at most 32 (GroupNorm's groups must divide every block width)."""
    return max(g for g in range(1, min(32, width) + 1) if width % g == 0)


def block_widths(width: int, depth: int) -> list[int]:
    """(W, 2W, 2W, 4W, 4W, ...): depth + 1 blocks, widths doubling every other block after the first."""
    return [width * 2 ** ((i + 1) // 2) for i in range(depth + 1)]


def unet2d_kwargs(config: UNetConfig) -> dict:
    """The UNet2DModel keyword arguments for a config (JSON values only: what the records hold)."""
    widths = block_widths(config.width, config.depth)
    n = len(widths)
    bottom = widths[-1]
    kw = {
        "sample_size": config.image_size, "in_channels": config.in_channels, "out_channels": config.in_channels,
        "block_out_channels": widths, "layers_per_block": 2,
        "down_block_types": ["DownBlock2D"] * (n - 1) + ["AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D"] + ["UpBlock2D"] * (n - 1),
        "norm_num_groups": norm_groups(config.width), "attention_head_dim": 8 if bottom % 8 == 0 else bottom,
        "time_embedding_type": "positional", "flip_sin_to_cos": True, "freq_shift": 0,
        "center_input_sample": False,
    }
    if config.conditioning == "class":
        kw["num_class_embeds"] = config.num_classes + 1
    return kw


@dataclass(frozen=True)
class DiffusersUNetConfig(UNetConfig):
    """A :class:`UNetConfig` that builds a :class:`DiffusersUNet` (``time_injection`` is kept for the record: the
    UNet2DModel adds its time embedding in every ResNet block)."""

    @property
    def unet2d(self) -> dict:
        return unet2d_kwargs(self)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "net": "diffusers", "unet2d": self.unet2d}

    @classmethod
    def of(cls, config: UNetConfig) -> DiffusersUNetConfig:
        return cls(width=config.width, conditioning=config.conditioning, time_injection=config.time_injection,
                   num_classes=config.num_classes, in_channels=config.in_channels, image_size=config.image_size)


def _unet2d_class():
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise UserError("--net diffusers needs the diffusers package: pip install 'fundiff[diffusers]'") from None
    return UNet2DModel


class DiffusersUNet(nn.Module):
    """fundiff's ``forward(x, t, c)`` around a diffusers ``UNet2DModel`` (``self.unet``; module docstring)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise TypeError(f"DiffusersUNet takes a UNetConfig, not {type(config).__name__}")
        self._unet_config = DiffusersUNetConfig.of(config)
        self.unet = _unet2d_class()(**self._unet_config.unet2d)

    @property
    def config(self) -> DiffusersUNetConfig:
        return self._unet_config

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B,C,S,S); t: (B,) normalised time in [0, 1]; c: (B,K) one-hot or zero rows."""
        cfg = self.config
        if cfg.conditioning != "none" and t is None:
            raise ValueError("this net is time-conditioned: pass t")
        b = x.shape[0]
        steps = torch.zeros(b, device=x.device) if cfg.conditioning == "none" else \
            t.reshape(-1).float().to(x.device).expand(b) * TIME_SCALE
        labels = None
        if cfg.conditioning == "class":
            if c is None:
                raise ValueError("this net is class-conditioned: pass c (one-hot, or zeros for no class)")
            c = c.to(x.device)
            null = torch.full((b,), cfg.num_classes, dtype=torch.long, device=x.device)
            labels = torch.where(c.abs().sum(dim=1) > 0, c.argmax(dim=1), null)
        return self.unet(x, steps, class_labels=labels).sample
