"""Pictures a training run writes at its sample epochs: sample grids (or denoised test digits) and the loss curve."""

from __future__ import annotations

from pathlib import Path

import torch

from fundiff.io.pictures import plot_curves, save_grid
from fundiff.nets.unet import UNet
from fundiff.sampling.digits import class_grid_labels, generate
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
    """samples/epoch_EEE.png: 4 per digit (class), 40 samples (time) or denoised test digits (denoiser).

    Previews use DDIM with 50 steps (Euler with 50 for flow) to keep training fast; ``fundiff
    sample`` and ``fundiff figures`` use the full samplers."""
    path = Path(run_dir) / "samples" / f"epoch_{epoch:03d}.png"
    net.eval()
    if recipe.model == "denoiser":
        return save_grid(denoise_examples(net, examples, recipe.sigma, seed, recipe.pure_noise), path,
                         nrow=len(examples))
    labels = class_grid_labels(list(range(10)), 4) if recipe.model == "class" else None
    x = generate(net, recipe, 40, labels, recipe.guidance, "ddim" if recipe.objective == "ddpm" else "ddpm", 50, seed)
    return save_grid(x.clamp(0, 1), path, nrow=10)


def loss_plot(run_dir: Path, losses: list[tuple], title: str) -> Path:
    steps = [r[0] for r in losses]
    return plot_curves({"training loss": (steps, [r[2] for r in losses])}, Path(run_dir) / "loss.png", title)
