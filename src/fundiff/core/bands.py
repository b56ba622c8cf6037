"""Hybrid images by factorized diffusion (Geng, Park, Owens, "Factorized Diffusion"; spec 1.9).

The noise estimate is split into frequency bands that sum to the identity, and each band is taken from a
different denoiser: eps = lowpass(eps_1) + highpass(eps_2), lowpass = Gaussian blur (kernel 33, sigma 2),
highpass = identity - lowpass. More sigmas give more bands (a three-way hybrid uses two).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import Tensor

from fundiff.core.contract import Denoiser, Output
from fundiff.core.views import mean_variance
from fundiff.errors import UserError

Band = Callable[[Tensor], Tensor]
"""A linear filter of images (B,C,H,W) -> (B,C,H,W)."""


def _check_blur(kernel: int, sigma: float) -> None:
    if kernel < 1 or kernel % 2 == 0:
        raise UserError(f"the Gaussian kernel size must be a positive odd number, got {kernel}")
    if not sigma > 0:
        raise UserError(f"the Gaussian sigma must be positive, got {sigma}")


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
    _check_blur(kernel, sigma)
    pad, (h, w) = kernel // 2, x.shape[-2:]
    if pad < min(h, w):  # torchvision's own reflect padding suffices
        return TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    blurred = TF.gaussian_blur(_mirror_pad(x, pad), [kernel, kernel], [sigma, sigma])
    return blurred[..., pad:pad + h, pad:pad + w]


def _lowpass(kernel: int, sigma: float) -> Band:
    def band(x: Tensor) -> Tensor:
        return gaussian_lowpass(x, kernel, sigma)

    return band


def _identity(x: Tensor) -> Tensor:
    return x


def _difference(wide: Band, narrow: Band) -> Band:
    """wide - narrow: the band passed by ``wide`` but not by ``narrow``."""

    def band(x: Tensor) -> Tensor:
        return wide(x) - narrow(x)

    return band


def frequency_bands(kernel: int, sigmas: Sequence[float]) -> list[Band]:
    """Bands [G_s1, G_s2 - G_s1, ..., I - G_sn] for s1 > s2 > ... > sn, lowest frequencies first.

    They telescope to the identity: sum_i band_i(x) = x (up to float rounding). One sigma gives the
    two-way hybrid [lowpass, identity - lowpass] of spec 1.9, two sigmas a three-way hybrid.
    """
    if not sigmas:
        raise UserError("frequency bands need at least one sigma")
    for s in sigmas:
        _check_blur(kernel, s)
    if len(set(sigmas)) != len(sigmas):
        raise UserError(f"frequency band sigmas must be distinct, got {list(sigmas)}")
    lows = [_lowpass(kernel, s) for s in sorted(sigmas, reverse=True)] + [_identity]
    return [lows[0]] + [_difference(wide, narrow) for narrow, wide in zip(lows[:-1], lows[1:])]


def hybrid_denoiser(eps_fns: Sequence[Denoiser], bands: Sequence[Band]) -> Denoiser:
    """eps = sum_i band_i(eps_i(x_t, k)); the variance is averaged, not filtered (spec 1.9).

    With bands frequency_bands(33, [2.0]) this is spec 1.9: eps = lowpass(eps_1) + highpass(eps_2).
    """
    if len(eps_fns) != len(bands) or len(bands) < 2:
        raise UserError(f"a hybrid needs one denoiser per band and at least 2 bands; "
                        f"got {len(eps_fns)} denoisers and {len(bands)} bands")
    pairs = list(zip(eps_fns, bands))

    def hybrid(x_t: Tensor, k: Tensor) -> Output:
        preds = [eps_fn(x_t, k) for eps_fn, _ in pairs]
        eps = torch.stack([band(p.value) for p, (_, band) in zip(preds, pairs)]).sum(0)
        return preds[0].with_value(eps, mean_variance(preds))

    return hybrid
