"""The spec's UNet family: plain, time-conditioned and class-conditioned (spec.md, Part B)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from fundiff.nets.blocks import FCBlock, conv_block, down_block, flatten, unflatten, up_block

CONDITIONINGS = ("none", "time", "class")
TIME_INJECTIONS = ("add", "mul")


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

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be a positive integer, got {self.width}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.time_injection not in TIME_INJECTIONS:
            raise ValueError(f"time_injection must be one of {TIME_INJECTIONS}, got {self.time_injection!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class UNet(nn.Module):
    """1x28x28 -> 1x28x28 UNet with skips at 28, 14 and 7 pixels.

    Shapes (D = width): x (B,1,28,28) -> ConvBlock (D,28) -> DownBlock (D,14) ->
    DownBlock (2D,7) -> Flatten (2D,1) -> Unflatten (2D,7) -> cat skip (4D,7) ->
    UpBlock (D,14) -> cat skip (2D,14) -> UpBlock (D,28) -> cat first (2D,28) ->
    ConvBlock (D,28) -> Conv2d k3 -> (1,28,28).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        d, c = config.width, config.in_channels
        self.first = conv_block(c, d)
        self.down1 = down_block(d, d)
        self.down2 = down_block(d, 2 * d)
        self.flatten = flatten()
        self.unflatten = unflatten(2 * d)
        self.up1 = up_block(4 * d, d)
        self.up2 = up_block(2 * d, d)
        self.last = conv_block(2 * d, d)
        self.out = nn.Conv2d(d, c, 3, 1, 1)
        if config.conditioning in ("time", "class"):
            self.fc1_t, self.fc2_t = FCBlock(1, 2 * d), FCBlock(1, d)
        if config.conditioning == "class":
            k = config.num_classes
            self.fc1_c, self.fc2_c = FCBlock(k, 2 * d), FCBlock(k, d)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor | None = None, c: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: (B,C,28,28); t: (B,) normalised time in [0, 1]; c: (B,K) one-hot or zeros."""
        h0 = self.first(x)
        h1 = self.down1(h0)
        h2 = self.down2(h1)
        u = self.unflatten(self.flatten(h2))
        u = self._inject(u, t, c, "fc1")
        u1 = self.up1(torch.cat([h2, u], dim=1))
        u1 = self._inject(u1, t, c, "fc2")
        u2 = self.up2(torch.cat([h1, u1], dim=1))
        return self.out(self.last(torch.cat([h0, u2], dim=1)))

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
