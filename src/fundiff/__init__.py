"""fundiff: Fun With Diffusion Models, as a reusable toolkit.

    import fundiff
    model = fundiff.load("digits")
    images = fundiff.generate(model, "7", n=8, seed=0)     # (8, 1, 28, 28) in [0, 1]
    fundiff.save_grid(images, "sevens.png")

The same shape for :func:`noise`, :func:`denoise`, :func:`edit`, :func:`inpaint`, :func:`anagram`,
:func:`hybrid` and :func:`colour_hybrid` (see :mod:`fundiff.parta`); :class:`Sampling` overrides a model's
sampling defaults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["DiffusionModel", "Sampling", "anagram", "colour_hybrid", "denoise", "edit", "generate", "hybrid",
           "inpaint", "load", "load_image", "noise", "save_grid", "save_image"]

_LAZY = {"load": "fundiff.models", "DiffusionModel": "fundiff.core.model", "Sampling": "fundiff.core.sampling",
         "noise": "fundiff.parta", "denoise": "fundiff.parta", "generate": "fundiff.parta", "edit": "fundiff.parta",
         "inpaint": "fundiff.parta", "anagram": "fundiff.parta", "hybrid": "fundiff.parta",
         "colour_hybrid": "fundiff.parta",
         "save_grid": "fundiff.io.pictures", "save_image": "fundiff.io.images", "load_image": "fundiff.io.images"}

if TYPE_CHECKING:
    from fundiff.core.model import DiffusionModel
    from fundiff.core.sampling import Sampling
    from fundiff.io.images import load_image, save_image
    from fundiff.io.pictures import save_grid
    from fundiff.models import load
    from fundiff.parta import anagram, colour_hybrid, denoise, edit, generate, hybrid, inpaint, noise


def __getattr__(name: str) -> Any:
    """The API, imported on first use (so ``import fundiff`` stays light for the command line)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fundiff' has no attribute {name!r}")
