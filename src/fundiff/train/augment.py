"""Seeded per-image geometric augmentation of training digits (a lever of issue 12: a wider class support).

Each picked image gets its own affine map: a rotation of up to ``MAX_DEGREES``, a scale in ``SCALES`` and a
shift of up to ``MAX_SHIFT`` of the image side, sampled bilinearly with zero (black) padding, as
torchvision's ``RandomAffine`` does for one image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_DEGREES, SCALES, MAX_SHIFT = 15.0, (0.9, 1.1), 0.08


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def random_affine_matrices(n: int, g: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) maps from output to input coordinates in [-1, 1]: A = R(-theta) / s, offset -A shift."""
    theta = torch.deg2rad(_uniform(n, -MAX_DEGREES, MAX_DEGREES, g))
    scale = _uniform(n, *SCALES, g)
    shift = _uniform(2 * n, -2 * MAX_SHIFT, 2 * MAX_SHIFT, g).view(n, 2)  # [-1, 1] spans 2 image sides
    cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
    a = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    offset = -(a @ shift.unsqueeze(-1))
    return torch.cat([a, offset], -1)


def random_affine(x: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W), with probability ``p``, rotated, scaled and shifted at random; the random
    numbers come from ``g`` on the CPU, so a seed gives the same batch on every device."""
    if p <= 0:
        return x
    n = x.shape[0]
    pick = torch.rand(n, generator=g) < p
    maps = random_affine_matrices(n, g)
    if not pick.any():
        return x
    on = pick.to(x.device)
    chosen = x[on]
    grid = F.affine_grid(maps[pick].to(x.device, x.dtype), list(chosen.shape), align_corners=False)
    out = x.clone()
    out[on] = F.grid_sample(chosen, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out
