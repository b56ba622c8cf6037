"""Part B figures from what runs wrote to disk (weights, loss.csv, run.json).

Each function writes one picture and returns a caption record {"file", "caption", "settings"}.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fundiff.core.sampling import Sampling
from fundiff.io.pictures import plot_curves, save_gif, save_grid
from fundiff.models.fundiff_unet import fundiff_model
from fundiff.partb.samples import sample_grid
from fundiff.train.checkpoint import load_model
from fundiff.train.loop import read_losses
from fundiff.train.preview import denoise_examples
from fundiff.train.recipes import Recipe

SIGMAS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)


def _rec(path: Path, caption: str, **settings: object) -> dict:
    return {"file": path.name, "caption": caption, "settings": settings}


def noising_figure(digits: torch.Tensor, out: Path, seed: int = 0) -> dict:
    """Rows of digits, columns z = x + sigma eps for sigma in SIGMAS."""
    g = torch.Generator().manual_seed(seed)
    cols = [d[None] + s * torch.randn(d[None].shape, generator=g) for d in digits for s in SIGMAS]
    path = save_grid(torch.cat(cols).clamp(0, 1), out / "noising.png", nrow=len(SIGMAS))
    return _rec(path, "The noising process z = x + sigma eps on held-out digits.", sigmas=list(SIGMAS), seed=seed)


def loss_figure(run_dir: Path, out: Path, name: str) -> dict:
    r = load_model(run_dir)[1]
    rows = read_losses(run_dir)
    path = plot_curves({label(r): ([x[0] for x in rows], [x[2] for x in rows])}, out / name,
                       f"{r.model} ({r.objective}, {r.recipe} recipe): training loss")
    return _rec(path, f"Training loss per step (log scale), {label(r)}.", **_recipe_settings(r))


def loss_comparison(run_dirs: list[Path], out: Path) -> dict:
    """All runs' loss curves in one plot, e.g. exponential vs constant learning rate."""
    curves = {}
    for d in run_dirs:
        r = load_model(d)[1]
        rows = read_losses(d)
        curves[f"{d.name}: {label(r)}"] = ([x[0] for x in rows], [x[2] for x in rows])
    path = plot_curves(curves, out / "loss_comparison.png", "Training loss of the runs compared")
    return _rec(path, "Loss curves of the runs side by side (log scale).", runs=[str(d) for d in run_dirs])


def label(r: Recipe) -> str:
    sched = "constant lr" if r.lr_schedule == "constant" else f"{r.lr_schedule} lr"
    return f"{r.model}/{r.objective}, D={r.width}, batch {r.batch_size}, lr {r.lr:g} ({sched}), {r.epochs} epochs"


def _recipe_settings(r: Recipe) -> dict:
    return {k: getattr(r, k) for k in ("model", "objective", "recipe", "epochs", "batch_size", "lr", "lr_schedule",
                                       "width", "ema_decay", "seed")}


def denoiser_results(run_dir: Path, epoch: int, digits: torch.Tensor, out: Path, seed: int = 0) -> dict:
    """Rows: test digits, their noisy versions, and the denoiser's output after ``epoch``."""
    net, r, _ = load_model(run_dir, epoch, "cpu")
    path = save_grid(denoise_examples(net, digits, r.sigma, seed, r.pure_noise).clamp(0, 1),
                     out / f"{Path(run_dir).name}_epoch_{epoch:03d}.png", nrow=len(digits))
    what = "pure noise z = eps" if r.pure_noise else f"z = x + {r.sigma:g} eps"
    return _rec(path, f"Single-step denoiser after epoch {epoch}: clean (top), {what} (middle), D(z) (bottom).",
                epoch=epoch, sigma=r.sigma, pure_noise=r.pure_noise, seed=seed)


def ood_figure(run_dir: Path, digit: torch.Tensor, out: Path, seed: int = 0) -> dict:
    """One digit noised at every sigma (top) and denoised (bottom): out-of-distribution noise levels."""
    net, r, ep = load_model(run_dir, None, "cpu")
    g = torch.Generator().manual_seed(seed)
    z = torch.cat([digit[None] + s * torch.randn(digit[None].shape, generator=g) for s in SIGMAS])
    with torch.no_grad():
        den = net(z.contiguous(memory_format=torch.channels_last)).float()
    path = save_grid(torch.cat([z, den]).clamp(0, 1), out / f"{Path(run_dir).name}_ood_sigmas.png", nrow=len(SIGMAS))
    return _rec(path, f"Denoiser trained at sigma = {r.sigma:g}, tested at other sigmas: noisy (top), denoised "
                "(bottom).", sigmas=list(SIGMAS), epoch=ep, seed=seed)


def pure_noise_figure(run_dir: Path, out: Path, n: int = 10, seed: int = 0) -> dict:
    """The denoiser applied to pure noise: it returns (roughly) the average digit."""
    net, r, ep = load_model(run_dir, None, "cpu")
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((n, 1, 28, 28), generator=g)
    with torch.no_grad():
        den = net(z.contiguous(memory_format=torch.channels_last)).float()
    path = save_grid(torch.cat([z, den]).clamp(0, 1), out / f"{Path(run_dir).name}_pure_noise.png", nrow=n)
    trained = "pure noise" if r.pure_noise else f"sigma = {r.sigma:g}"
    return _rec(path, f"Denoising pure noise in one step (denoiser trained on {trained}): inputs (top), outputs "
                "(bottom): the average of the training digits, not a new digit.", epoch=ep, seed=seed)


def samples_figure(run_dir: Path, epoch: int, out: Path, sampler: str | None, steps: int | None, seed: int,
                   gif: bool = True) -> list[dict]:
    """Samples after ``epoch`` (4 per digit for class nets, 40 for time nets) and a GIF of the trajectory."""
    net, r, _ = load_model(run_dir, epoch, "cpu")
    model = fundiff_model(net, r, str(run_dir), net_device(net))
    s = Sampling(sampler=sampler, steps=steps).over(model.sampling)
    frames: list | None = [] if gif else None
    classes = list(range(10)) if r.model == "class" else None
    x, _ = sample_grid(model, classes, 4, seed, s, frames, progress=f"samples e{epoch}")
    stem = f"{Path(run_dir).name}_epoch_{epoch:03d}"
    n_steps = len(s.timesteps(model.schedule.T))
    records = [_rec(save_grid(x, out / f"{stem}.png", nrow=10),
                    f"{r.model}-conditioned {r.objective} samples after epoch {epoch}"
                    + (f", 4 per digit, CFG gamma = {s.guidance:g}" if r.model == "class" else "") + ".",
                    epoch=epoch, sampler=s.sampler, steps=n_steps, seed=seed,
                    guidance=s.guidance if r.model == "class" else None)]
    if gif:
        path = save_gif(frames, out / f"{stem}.gif", nrow=10)
        records.append(_rec(path, f"The sampling process from noise to digits, epoch {epoch}.", epoch=epoch,
                            sampler=s.sampler, seed=seed))
    return records


def net_device(net: torch.nn.Module) -> torch.device:
    return next(net.parameters()).device


def held_out_digits(net_recipe: Recipe, data_dir: Path | None) -> torch.Tensor:
    from fundiff.train.data import load_digits, split_holdout

    held = split_holdout(load_digits(net_recipe.data, data_dir), net_recipe.holdout_per_class)[1]
    return torch.stack([held.images[(held.labels == c).nonzero()[0, 0]] for c in range(10)])

