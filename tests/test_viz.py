"""io/pictures.py: grids, GIFs and loss curves."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from fundiff.io.pictures import grid_array, plot_curves, save_gif, save_grid, to_uint8


def test_to_uint8_clips_and_scales():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0]).reshape(1, 1, 1, 5)
    assert to_uint8(x).reshape(-1).tolist() == [0, 0, 128, 255, 255]
    assert to_uint8(torch.zeros(1, 1, 1, 1), value_range=(-1, 1)).item() == 128


def test_grid_layout():
    imgs = torch.zeros(12, 1, 28, 28)
    imgs[11] = 1.0  # the last image sits in row 2, column 2
    g = grid_array(imgs, nrow=10, pad=2, scale=1)
    assert g.shape == (2 * 30 + 2, 10 * 30 + 2)
    assert (g[32:60, 32:60] == 255).all() and (g[2:30, 2:30] == 0).all()
    assert (g[0, :] == 255).all()  # white padding
    assert grid_array(imgs, nrow=10, scale=2).shape == (124, 604)


def test_save_grid_and_gif(tmp_path):
    frames = [torch.full((4, 1, 28, 28), v) for v in (0.0, 0.5, 1.0)]
    png = save_grid(frames[1], tmp_path / "g.png", nrow=2)
    arr = np.asarray(Image.open(png))
    assert arr.shape == ((2 * 30 + 2) * 2, (2 * 30 + 2) * 2) and arr[4, 4] == 128
    gif = Image.open(save_gif(frames, tmp_path / "a.gif", nrow=2))
    assert gif.n_frames == 3


def test_plot_curves_writes_a_png(tmp_path):
    p = plot_curves({"loss": (list(range(100)), [1 / (i + 1) for i in range(100)])}, tmp_path / "l.png", "t")
    assert Image.open(p).format == "PNG"
