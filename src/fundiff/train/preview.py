"""Pictures a training run writes at its sample epochs: sample grids (or denoised test digits) and the loss curve."""

from __future__ import annotations

from pathlib import Path

import torch

from fundiff.io.pictures import plot_curves, save_grid
from fundiff.nets.unet import UNet
from fundiff.train.recipes import Recipe


def denoise_examples(net: UNet, x: torch.Tensor, sigma: float, seed: int = 0, pure_noise: bool = False) -> torch.Tensor:
    """Rows: clean x, noisy z = x + sigma eps (or eps), and D(z)."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(x.shape, generator=g)
    z = eps if pure_noise else x + sigma * eps
    with torch.no_grad():
        out = net.eval()(z.contiguous(memory_format=torch.channels_last)).float()
    return torch.cat([x, z, out])


def preview(net: UNet, recipe: Recipe, run_dir: Path, epoch: int, examples: torch.Tensor, seed: int = 0) -> Path:
    """samples/epoch_EEE.png: 4 per class (the first 10 classes), 40 samples (time) or denoised test images
    (denoiser).

    Previews use the recipe's own sampler when it is a few-step one (DPM-Solver++(2M), the default recipe's),
    else DDIM with 50 steps (Euler with 50 for flow) to keep training fast; ``fundiff sample`` and ``fundiff
    figures`` use the run's card."""
    path = Path(run_dir) / "samples" / f"epoch_{epoch:03d}.png"
    net.eval()
    if recipe.model == "denoiser":
        return save_grid(denoise_examples(net, examples, recipe.sigma, seed, recipe.pure_noise), path,
                         nrow=len(examples))
    from fundiff.core.sampling import Sampling
    from fundiff.models.fundiff_unet import fundiff_model
    from fundiff.partb.samples import sample_grid

    model = fundiff_model(net, recipe, str(run_dir), next(net.parameters()).device)
    classes = list(range(min(10, recipe.num_classes))) if recipe.model == "class" else None
    fast = None if recipe.sampler == "dpmpp-2m" else Sampling(sampler="ddim" if recipe.objective == "ddpm" else
                                                               "euler", steps=50)
    x, _ = sample_grid(model, classes, 4, seed, fast, progress=False)
    return save_grid(x, path, nrow=len(classes) if classes else 10)


def loss_plot(run_dir: Path, losses: list[tuple], title: str) -> Path:
    steps = [r[0] for r in losses]
    return plot_curves({"training loss": (steps, [r[2] for r in losses])}, Path(run_dir) / "loss.png", title)
