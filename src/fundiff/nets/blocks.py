"""The building blocks of the spec's UNet (spec.md, Part B, "The UNet")."""

from __future__ import annotations

import torch
from torch import nn


def _bn_gelu(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(channels), nn.GELU())


def conv(c_in: int, c_out: int) -> nn.Sequential:
    """Conv = Conv2d(k3, s1, p1) + BatchNorm + GELU (keeps the size)."""
    return _bn_gelu(nn.Conv2d(c_in, c_out, 3, 1, 1), c_out)


def down_conv(c_in: int, c_out: int) -> nn.Sequential:
    """DownConv = Conv2d(k3, s2, p1) + BN + GELU (halves the size)."""
    return _bn_gelu(nn.Conv2d(c_in, c_out, 3, 2, 1), c_out)


def up_conv(c_in: int, c_out: int) -> nn.Sequential:
    """UpConv = ConvTranspose2d(k4, s2, p1) + BN + GELU (doubles the size)."""
    return _bn_gelu(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), c_out)


def flatten(size: int = 7) -> nn.Sequential:
    """Flatten = AvgPool(7) + GELU (7x7 -> 1x1; the bottom's ``size`` for other image sizes)."""
    return nn.Sequential(nn.AvgPool2d(size), nn.GELU())


def unflatten(channels: int, size: int = 7) -> nn.Sequential:
    """Unflatten = ConvTranspose2d(k7, s7, p0) + BN + GELU (1x1 -> 7x7; 1x1 -> ``size`` x ``size``)."""
    return _bn_gelu(nn.ConvTranspose2d(channels, channels, size, size, 0), channels)


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """ConvBlock = Conv, Conv."""
    return nn.Sequential(conv(c_in, c_out), conv(c_out, c_out))


def down_block(c_in: int, c_out: int) -> nn.Sequential:
    """DownBlock = DownConv, ConvBlock."""
    return nn.Sequential(down_conv(c_in, c_out), conv_block(c_out, c_out))


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    """UpBlock = UpConv, ConvBlock."""
    return nn.Sequential(up_conv(c_in, c_out), conv_block(c_out, c_out))


class FCBlock(nn.Module):
    """FCBlock(F_in, F_out) = Linear(F_in, F_out), GELU, Linear(F_out, F_out).

    Maps a conditioning vector (B, F_in) to a per-channel map (B, F_out, 1, 1).
    """

    def __init__(self, f_in: int, f_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(f_in, f_out), nn.GELU(), nn.Linear(f_out, f_out))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.net(v)[:, :, None, None]
