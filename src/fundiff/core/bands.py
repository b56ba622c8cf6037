"""Hybrid images by factorized diffusion (Geng, Park, Owens, "Factorized Diffusion"; spec 1.9).

The noise estimate is split into frequency bands that sum to the identity, and each band is taken from a
different denoiser: eps = lowpass(eps_1) + highpass(eps_2), lowpass = Gaussian blur (kernel 33, sigma 2),
highpass = identity - lowpass. More sigmas give more bands (a three-way hybrid uses two).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import Tensor

from fundiff.core.contract import Denoiser, Joint, Output, as_joint
from fundiff.core.views import mean_variance
from fundiff.errors import UserError

Band = Callable[[Tensor], Tensor]
"""A linear filter of images (B,C,H,W) -> (B,C,H,W)."""


def check_blur(kernel: int, sigma: float, image_size: int | None = None) -> None:
    """A Gaussian blur that means something: an odd kernel of at most 2 x image_size + 1 pixels (a wider one only
    repeats mirror images of the image, at a cost that grows with its square) and a finite sigma > 0."""
    if kernel < 1 or kernel % 2 == 0:
        raise UserError(f"the Gaussian kernel size must be a positive odd number, got {kernel}")
    if image_size is not None and kernel > 2 * image_size + 1:
        raise UserError(f"a Gaussian kernel of {kernel} pixels is wider than a {image_size} px image can use; "
                        f"give at most {2 * image_size + 1}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise UserError(f"the Gaussian sigma must be a positive finite number, got {sigma}")



def _mirror_pad(x: Tensor, pad: int) -> Tensor:
    """Reflect-pad the last two dims by ``pad`` on every side, repeating the reflection when pad >= side.

    Repeated reflection is the same infinite mirror extension torchvision's reflect padding uses for small
    pads, so blurs agree whichever path they take; a 1-pixel side has nothing to reflect and is replicated.
    """
    while pad > 0:
        step = min(pad, min(x.shape[-2:]) - 1)
        if step == 0:
            return F.pad(x, (pad, pad, pad, pad), mode="replicate")
        x, pad = F.pad(x, (step, step, step, step), mode="reflect"), pad - step
    return x


def gaussian_lowpass(x: Tensor, kernel: int = 33, sigma: float = 2.0) -> Tensor:
    """G_sigma * x: a normalised kernel x kernel Gaussian blur with reflect padding (spec 1.9 lowpass).

    Args:
        x: (B,C,H,W) floating images; any odd kernel works, even one wider than the image.

    Returns:
        (B,C,H,W) blurred images.
    """
    check_blur(kernel, sigma)
    pad, (h, w) = kernel // 2, x.shape[-2:]
    if pad < min(h, w):  # torchvision's own reflect padding suffices
        return TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    blurred = TF.gaussian_blur(_mirror_pad(x, pad), [kernel, kernel], [sigma, sigma])
    return blurred[..., pad:pad + h, pad:pad + w]


def separable_lowpass(x: Tensor, kernel: int, sigma: float) -> Tensor:
    """:func:`gaussian_lowpass` (same normalised kernel, reflect padding) as two 1-D convolutions: 2 k instead of
    k^2 multiplies per pixel, which matters for wide kernels (129 at 256 px)."""
    check_blur(kernel, sigma)
    pad, c = kernel // 2, x.shape[1]
    if pad >= min(x.shape[-2:]):
        return gaussian_lowpass(x, kernel, sigma)
    t = torch.linspace(-pad, pad, kernel, dtype=x.dtype, device=x.device)
    k1d = torch.exp(-0.5 * (t / sigma) ** 2)
    k1d = (k1d / k1d.sum()).repeat(c, 1, 1, 1)
    y = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k1d.view(c, 1, 1, kernel), groups=c)
    return F.conv2d(y, k1d.view(c, 1, kernel, 1), groups=c)


def _lowpass(kernel: int, sigma: float, scale: int = 1) -> Band:
    """G_sigma at scale 1; at ``scale`` s the same filter for an s times larger image (kernel 2 r + 1 -> 2 r s + 1,
    sigma -> s sigma), computed separably."""
    if scale == 1:
        return lambda x: gaussian_lowpass(x, kernel, sigma)
    wide = 2 * (kernel // 2) * scale + 1
    return lambda x: separable_lowpass(x, wide, sigma * scale)


def _identity(x: Tensor) -> Tensor:
    return x


def _difference(wide: Band, narrow: Band) -> Band:
    """wide - narrow: the band passed by ``wide`` but not by ``narrow``."""

    def band(x: Tensor) -> Tensor:
        return wide(x) - narrow(x)

    return band


def frequency_bands(kernel: int, sigmas: Sequence[float], scale: int = 1) -> list[Band]:
    """Bands [G_s1, G_s2 - G_s1, ..., I - G_sn] for s1 > s2 > ... > sn, lowest frequencies first.

    They telescope to the identity: sum_i band_i(x) = x (up to float rounding). One sigma gives the
    two-way hybrid [lowpass, identity - lowpass] of spec 1.9, two sigmas a three-way hybrid. ``scale`` gives the
    same bands for an image ``scale`` times larger (stage II of DeepFloyd: 64 -> 256 px, scale 4).
    """
    if not sigmas:
        raise UserError("frequency bands need at least one sigma")
    for s in sigmas:
        check_blur(kernel, s)
    if len(set(sigmas)) != len(sigmas):
        raise UserError(f"frequency band sigmas must be distinct, got {list(sigmas)}")
    lows = [_lowpass(kernel, s, scale) for s in sorted(sigmas, reverse=True)] + [_identity]
    return [lows[0]] + [_difference(wide, narrow) for narrow, wide in zip(lows[:-1], lows[1:])]


def hybrid_denoiser(eps_fns: Sequence[Denoiser] | Joint, bands: Sequence[Band]) -> Denoiser:
    """eps = sum_i band_i(eps_i(x_t, k)); the variance is averaged, not filtered (spec 1.9).

    With bands frequency_bands(33, [2.0]) this is spec 1.9: eps = lowpass(eps_1) + highpass(eps_2).
    ``eps_fns`` is one denoiser per band, or a :data:`~fundiff.core.contract.Joint` computing them together.
    """
    given = len(eps_fns) if not callable(eps_fns) else len(bands)
    if given != len(bands) or len(bands) < 2:
        raise UserError(f"a hybrid needs one denoiser per band and at least 2 bands; "
                        f"got {given} denoisers and {len(bands)} bands")
    joint, bands = as_joint(eps_fns), list(bands)

    def hybrid(x_t: Tensor, k: Tensor) -> Output:
        preds = joint([x_t] * len(bands), k)
        eps = torch.stack([band(p.value) for p, band in zip(preds, bands)]).sum(0)
        return preds[0].with_value(eps, mean_variance(preds))

    return hybrid
