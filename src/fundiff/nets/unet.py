"""The spec's UNet family: plain, time-conditioned and class-conditioned (spec.md, Part B), for any channel count
and for the image sizes whose halvings end at 4-8 px (28 -> 14 -> 7 is the spec's)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from fundiff.nets.blocks import FCBlock, conv_block, down_block, flatten, unflatten, up_block

CONDITIONINGS = ("none", "time", "class")
TIME_INJECTIONS = ("add", "mul")
MIN_SIZE, MAX_SIZE = 8, 256
"""Image sizes the UNet builds for (each must also halve cleanly down to its bottom, see :func:`unet_depth`)."""


def unet_depth(size: int) -> int:
    """How many DownBlocks a ``size`` px image takes: the fewest (at least one) that bring it to 8 px or below,
    28 -> 2 (7 px), 32 -> 2 (8 px), 64 -> 3 (8 px). 0 when ``size`` does not halve that many times cleanly."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        return 0
    depth = max(1, math.ceil(math.log2(size / 8)))
    return depth if size % (2 ** depth) == 0 else 0


def supported_size(size: float) -> int:
    """The image size the UNet supports nearest to ``size`` (the larger on a tie), within 8-256 px."""
    sizes = [s for s in range(MIN_SIZE, MAX_SIZE + 1) if unet_depth(s)]
    return min(sizes, key=lambda s: (abs(s - size), -s))


@dataclass(frozen=True)
class UNetConfig:
    """What builds a UNet: hidden width D, conditioning and how time is injected.

    ``time_injection`` is "add" for DDPM (h <- h + t) and "mul" for the flow-matching
    time-only net (h <- h * t); the class net always uses h <- c * h + t.
    """

    width: int = 64
    conditioning: str = "none"
    time_injection: str = "add"
    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28

    def __post_init__(self) -> None:
        if not unet_depth(self.image_size):
            raise ValueError(f"image_size {self.image_size} is not one the UNet builds for; the nearest is "
                             f"{supported_size(self.image_size)}")
        if self.in_channels < 1 or self.num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be positive, got {self.in_channels}, "
                             f"{self.num_classes}")
        if self.width < 1:
            raise ValueError(f"width must be a positive integer, got {self.width}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.time_injection not in TIME_INJECTIONS:
            raise ValueError(f"time_injection must be one of {TIME_INJECTIONS}, got {self.time_injection!r}")

    @property
    def depth(self) -> int:
        return unet_depth(self.image_size)

    def to_dict(self) -> dict:
        """Every field; ``image_size`` only when it is not the spec's 28 (so older runs' records read the same)."""
        d = asdict(self)
        if d["image_size"] == 28:
            del d["image_size"]
        return d


class UNet(nn.Module):
    """CxSxS -> CxSxS UNet; at 28 px the spec's, with skips at 28, 14 and 7 pixels.

    Shapes (D = width, 28 px): x (B,1,28,28) -> ConvBlock (D,28) -> DownBlock (D,14) ->
    DownBlock (2D,7) -> Flatten (2D,1) -> Unflatten (2D,7) -> cat skip (4D,7) ->
    UpBlock (D,14) -> cat skip (2D,14) -> UpBlock (D,28) -> cat first (2D,28) ->
    ConvBlock (D,28) -> Conv2d k3 -> (1,28,28).

    Other sizes take as many DownBlocks as bring them to 4-8 px (:func:`unet_depth`), each past the first doubling
    the width (64 px: D, D, 2D, 4D at 32, 16, 8 px) and an UpBlock back for each; time and class still enter at the
    bottom (fc1) and after the first UpBlock (fc2). The 28 px net's parameter names are the spec net's.

    The diffusers model of the same net (``from_pretrained``, ``save_pretrained``) is
    :class:`fundiff.nets.hub.UNetModel`, kept apart because diffusers takes seconds to import.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise TypeError(f"UNet takes a UNetConfig, not {type(config).__name__}")
        self._unet_config = config
        d, c, depth = config.width, config.in_channels, config.depth
        widths = [d, d] + [d * 2 ** i for i in range(1, depth)]  # after first, down1, down2, ...
        bottom = config.image_size // 2 ** depth
        self.first = conv_block(c, d)
        for i in range(1, depth + 1):
            setattr(self, f"down{i}", down_block(widths[i - 1], widths[i]))
        self.flatten = flatten(bottom)
        self.unflatten = unflatten(widths[depth], bottom)
        for i in range(1, depth + 1):  # up_i takes the skip and the path at level depth - i + 1
            setattr(self, f"up{i}", up_block(2 * widths[depth - i + 1], widths[depth - i]))
        self.last = conv_block(2 * d, d)
        self.out = nn.Conv2d(d, c, 3, 1, 1)
        if config.conditioning in ("time", "class"):
            self.fc1_t, self.fc2_t = FCBlock(1, widths[depth]), FCBlock(1, widths[depth - 1])
        if config.conditioning == "class":
            k = config.num_classes
            self.fc1_c, self.fc2_c = FCBlock(k, widths[depth]), FCBlock(k, widths[depth - 1])

    @property
    def config(self) -> UNetConfig:
        """The :class:`UNetConfig` the net was built from (also on the diffusers subclass, whose ConfigMixin would
        give its FrozenDict here)."""
        return self._unet_config

    def forward(
        self, x: torch.Tensor, t: torch.Tensor | None = None, c: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: (B,C,S,S); t: (B,) normalised time in [0, 1]; c: (B,K) one-hot or zeros."""
        depth = self.config.depth
        skips = [self.first(x)]
        for i in range(1, depth + 1):
            skips.append(getattr(self, f"down{i}")(skips[-1]))
        u = self._inject(self.unflatten(self.flatten(skips[-1])), t, c, "fc1")
        for i in range(1, depth + 1):
            u = getattr(self, f"up{i}")(torch.cat([skips[depth - i + 1], u], dim=1))
            if i == 1:
                u = self._inject(u, t, c, "fc2")
        return self.out(self.last(torch.cat([skips[0], u], dim=1)))

    def _inject(self, h: torch.Tensor, t: torch.Tensor | None, c: torch.Tensor | None, fc: str) -> torch.Tensor:
        """Time adds (or multiplies, for flow time-only nets); class multiplies: h <- c * h + t."""
        cond = self.config.conditioning
        if cond == "none":
            return h
        if t is None:
            raise ValueError("this UNet is time-conditioned: pass t")
        tt = getattr(self, f"{fc}_t")(t.reshape(-1, 1).to(h.dtype))
        if cond == "time":
            return h * tt if self.config.time_injection == "mul" else h + tt
        if c is None:
            raise ValueError("this UNet is class-conditioned: pass c (one-hot, or zeros for no class)")
        cc = getattr(self, f"{fc}_c")(c.to(h.dtype))
        return cc * h + tt
