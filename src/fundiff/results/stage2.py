"""The stage-II outputs every Part A command writes with ``--upsample`` (DeepFloyd): each result at 256 px."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from fundiff.core import edits
from fundiff.core.bands import frequency_bands
from fundiff.core.colour import greyscale_component
from fundiff.core.model import Condition
from fundiff.core.sampling import Sampling
from fundiff.core.views import make_view
from fundiff.io.images import load_image
from fundiff.io.pictures import save_grid

Run = Any
"""A :class:`fundiff.results.parta.Run` (not imported: that module imports this one)."""


def stage_2(run: Run):
    """The run's stage II, loaded once (same device, dtype, offload and prompt cache as stage I)."""
    if run.stage_2 is None:
        from fundiff.models.deepfloyd.stage2 import load_upsampler

        run.stage_2 = load_upsampler(run.model, run.up.stage_2)
    return run.stage_2


def stage2_sampling(run: Run) -> Sampling:
    """--steps-2 M evenly spaced steps; default diffusers' 50 (980, 960, ..., 0)."""
    from fundiff.models.deepfloyd.stage2 import STAGE2_SAMPLING

    steps_2 = run.up.steps_2
    base = STAGE2_SAMPLING if steps_2 is None else Sampling(steps=steps_2)
    return replace(base, sampler=run.sampling.sampler, clip=run.sampling.clip)


def upsample_images(run: Run, stem: str, x: torch.Tensor, condition: Condition = None) -> torch.Tensor:
    """Stage II of ``x`` (N, 3, 64, 64) as ``{stem}_256[_NN].png`` and a grid."""
    from fundiff.models.deepfloyd.stage2 import upsample

    hr = upsample(stage_2(run), x, condition, None, run.seed, stage2_sampling(run))
    _save_all(run, hr, stem, min(len(hr), 10))
    return hr


def upsample_part0(run: Run, stem: str, x: torch.Tensor, condition: Condition = None) -> torch.Tensor:
    """Part 0: stage II as IFSuperResolutionPipeline makes it, --steps-2 (default 50) of its own spacing."""
    from fundiff.models.deepfloyd.pipeline import super_resolve

    hr = super_resolve(stage_2(run), x, condition, 50 if run.up.steps_2 is None else run.up.steps_2, seed=run.seed)
    _save_all(run, hr, stem, min(len(hr), 10))
    return hr


def upsample_anagram_images(run: Run, stem: str, x: torch.Tensor, conditions: list[Condition],
                            views: list[str]) -> torch.Tensor:
    """Stage II of an anagram, each view seeing its view of the image; saved upright and under each view."""
    from fundiff.models.deepfloyd.stage2 import upsample_anagram

    up = stage_2(run)
    hr = upsample_anagram(up, x, conditions, views, None, run.seed, stage2_sampling(run))
    shown = [make_view(v, up.image_size).view(hr) for v in views]
    names = [f"{i:02d}_{v}" for i in range(len(hr)) for v in views]
    _save_all(run, torch.stack(shown, 1).flatten(0, 1), stem, len(views), names)
    return hr


def upsample_hybrid_images(run: Run, stem: str, x: torch.Tensor, conditions: list[Condition], kernel: int,
                           sigmas: list[float]) -> torch.Tensor:
    """Stage II of a hybrid with the bands scaled to 256 px; saved with its low-pass copy (as seen from far)."""
    from fundiff.models.deepfloyd.stage2 import upsample_hybrid

    up = stage_2(run)
    hr = upsample_hybrid(up, x, conditions, kernel, sigmas, None, run.seed, stage2_sampling(run))
    far = frequency_bands(kernel, [max(sigmas)], up.image_size // x.shape[-1])[0](hr)
    names = [f"{i:02d}{side}" for i in range(len(hr)) for side in ("", "_far")]
    _save_all(run, torch.stack([hr, far], 1).flatten(0, 1), stem, 2, names)
    return hr


INPAINT_256 = ("original", "raw", "naive_paste", "laplacian_blend")
"""The stage-II inpainting pictures, in the grid's order: the 256 px original, stage II of the inpainted image,
that pasted into the original with a hard mask edge, and blended into it by a Laplacian pyramid."""


def upsample_inpainted(run: Run, stem: str, x: torch.Tensor, condition: Condition, image: Path,
                       mask: torch.Tensor) -> torch.Tensor:
    """Stage II of an inpainted image, put back into the 256 px original outside the mask two ways: a naive paste
    (hard edge) and a Laplacian-pyramid blend; saved as :data:`INPAINT_256`. Returns the blend."""
    from fundiff.models.deepfloyd.stage2 import upsample_inpainting

    up = stage_2(run)
    original = load_image(Path(image), up.image_size, 3)
    hr, pasted, blended = upsample_inpainting(up, x, original, mask, condition, None, run.seed, stage2_sampling(run))
    _save_all(run, torch.cat([original, hr, pasted, blended]), stem, len(INPAINT_256), names=list(INPAINT_256))
    return blended


def upsample_colour_hybrid_images(run: Run, stem: str, x: torch.Tensor, conditions: list[Condition]
                                  ) -> torch.Tensor:
    """Stage II of a colour hybrid (greyscale and colour components at 256 px); saved with its greyscale version."""
    from fundiff.models.deepfloyd.stage2 import upsample_colour_hybrid

    hr = upsample_colour_hybrid(stage_2(run), x, conditions, None, run.seed, stage2_sampling(run))
    names = [f"{i:02d}{side}" for i in range(len(hr)) for side in ("", "_grey")]
    _save_all(run, torch.stack([hr, greyscale_component(hr)], 1).flatten(0, 1), stem, 2, names)
    return hr


def _save_all(run: Run, images: torch.Tensor, stem: str, nrow: int, names: list[str] | None = None) -> None:
    for i, img in enumerate(images):
        suffix = f"_{names[i]}" if names else (f"_{i:02d}" if len(images) > 1 else "")
        run.image(img[None], f"{stem}_256{suffix}.png")
    if len(images) > 1:
        save_grid(images, run.dir / f"{stem}_256_grid.png", nrow=nrow, scale=1)
        run.files.append(f"{stem}_256_grid.png")


def noise_256(run: Run, image: Path, ts: list[int]) -> torch.Tensor:
    """The forward process at 256 px (nothing for stage II to denoise): the image at 256, noised to each t."""
    x0 = load_image(image, stage_2(run).image_size, 3) * 2 - 1
    g = torch.Generator().manual_seed(run.seed)
    noisy = [((edits.noise_to(x0, k, run.model.schedule, g) + 1) / 2).clamp(0, 1) for k in ts]
    _save_all(run, torch.cat([(x0 + 1) / 2, *noisy]), "noisy", len(ts) + 1, ["input", *(f"t{k}" for k in ts)])
    return torch.cat(noisy)


