"""Colour hybrids by factorized diffusion (Geng, Park, Owens, "Factorized Diffusion"; spec 1.8-1.9, extras).

An image (or a noise estimate) splits into a greyscale and a colour component that sum to the identity:
g(x) = mean_c(x) broadcast to every channel, c(x) = x - g(x). Both are linear projections (g(g(x)) = g(x),
g(c(x)) = 0), so, as with the frequency bands of :mod:`fundiff.core.bands`, each component of the noise
estimate can come from a different denoiser: eps = g(eps_1) + c(eps_2). The result is an image whose greyscale
version reads as prompt 1 and whose colours paint prompt 2.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from fundiff.core.contract import Denoiser, Joint, Output, as_joint
from fundiff.core.views import mean_variance
from fundiff.errors import UserError


def greyscale_component(x: Tensor) -> Tensor:
    """g(x) = (1/C) sum_c x_c, broadcast to the C channels.

    Args:
        x: (B,C,H,W) images or noise estimates.

    Returns:
        (B,C,H,W), every channel the channel mean; a grey image (all channels equal) is its own g.
    """
    return x.mean(1, keepdim=True).expand_as(x)


def colour_component(x: Tensor) -> Tensor:
    """c(x) = x - g(x): what is left after the greyscale component; its channel mean is 0.

    Args:
        x: (B,C,H,W) images or noise estimates.

    Returns:
        (B,C,H,W) colour component; g(x) + c(x) = x.
    """
    return x - greyscale_component(x)


def colour_hybrid_denoiser(eps_fns: Sequence[Denoiser] | Joint) -> Denoiser:
    """eps = g(eps_1(x_t, k)) + c(eps_2(x_t, k)); the variance is averaged, not decomposed (as in a hybrid, 1.9).

    ``eps_fns`` are the (guided) denoisers of the greyscale prompt and the colour prompt, in that order (or a
    :data:`~fundiff.core.contract.Joint` of the two). On one channel c is 0 and the colour prompt has no effect: use
    RGB models.
    """
    if not callable(eps_fns) and len(eps_fns) != 2:
        raise UserError(f"a colour hybrid takes 2 denoisers (greyscale, colour), got {len(eps_fns)}")
    joint = as_joint(eps_fns)

    def colour_hybrid(x_t: Tensor, k: Tensor) -> Output:
        grey, colour = joint([x_t, x_t], k)
        eps = greyscale_component(grey.value) + colour_component(colour.value)
        return grey.with_value(eps, mean_variance([grey, colour]))

    return colour_hybrid
