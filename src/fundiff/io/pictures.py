"""Pictures: image grids (PNG), sampling GIFs and log-scale loss curves. Writes are atomic."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fundiff.io.files import atomic_write


def to_uint8(images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(N, C, H, W) floats in value_range -> (N, H, W, C) uint8, clipped."""
    lo, hi = value_range
    x = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def to_pil(image: torch.Tensor) -> Image.Image:
    """One image (C, H, W) in [0, 1], C = 1 or 3, as a PIL image ("L" or "RGB")."""
    a = to_uint8(image[None])[0]
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


def grid_array(images: torch.Tensor, nrow: int, pad: int = 2, scale: int = 2,
               value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Tile N images into rows of ``nrow`` with ``pad`` pixels of white between, upscaled by ``scale``."""
    arr = to_uint8(images, value_range)
    n, h, w, c = arr.shape
    rows = (n + nrow - 1) // nrow
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = arr[i]
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out[..., 0] if c == 1 else out


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None, scale: int = 2,
              value_range: tuple[float, float] = (0.0, 1.0)) -> Path:
    """Write a PNG grid of ``images`` (N, C, H, W), ``nrow`` per row (default: all of them, at most 10)."""
    nrow = min(len(images), 10) if nrow is None else nrow
    img = Image.fromarray(grid_array(images, nrow, scale=scale, value_range=value_range))
    atomic_write(Path(path), lambda p: img.save(p, format="PNG"))
    return Path(path)


def save_gif(frames: Sequence[torch.Tensor], path: Path, nrow: int = 10, scale: int = 2,
             duration_ms: int = 40, hold_last_ms: int = 1500,
             value_range: tuple[float, float] = (0.0, 1.0)) -> Path:
    """Write an animated GIF whose frames are grids of each (N, C, H, W) tensor; the last frame holds."""
    imgs = [Image.fromarray(grid_array(f, nrow, scale=scale, value_range=value_range)) for f in frames]
    durations = [duration_ms] * (len(imgs) - 1) + [hold_last_ms]
    atomic_write(Path(path), lambda p: imgs[0].save(p, format="GIF", save_all=True, append_images=imgs[1:],
                                                    duration=durations, loop=0))
    return Path(path)


def plot_curves(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path, title: str,
                xlabel: str = "training step", ylabel: str = "loss (log scale)") -> Path:
    """Log-scale line plot of named (x, y) curves, with a smoothed overlay when a curve is long."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for label, (xs, ys) in curves.items():
        line, = ax.plot(xs, ys, lw=0.6, alpha=0.45 if len(ys) > 50 else 1.0)
        if len(ys) > 50:
            w = max(len(ys) // 50, 2)
            smooth = np.convolve(np.asarray(ys, dtype=float), np.ones(w) / w, mode="valid")
            ax.plot(np.asarray(xs)[w - 1:], smooth, color=line.get_color(), lw=1.6, label=label)
        else:
            line.set_label(label)
    ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(Path(path), lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return Path(path)
