"""The training augmentation: seeded, a fraction of the images, each its own mild affine map."""

import math

import torch

from fundiff.train.augment import MAX_DEGREES, random_affine, random_affine_matrices


def _dot(size=28, at=(14, 20)):
    x = torch.zeros(1, 1, size, size)
    x[..., at[0] - 1:at[0] + 1, at[1] - 1:at[1] + 1] = 1.0
    return x


def _centre_of_mass(x):
    ys, xs = torch.meshgrid(torch.arange(x.shape[-2]), torch.arange(x.shape[-1]), indexing="ij")
    w = x[0, 0]
    return float((w * ys).sum() / w.sum()), float((w * xs).sum() / w.sum())


def test_off_returns_the_batch_and_the_same_seed_the_same_batch():
    x = torch.rand(64, 1, 28, 28)
    assert random_affine(x, torch.Generator().manual_seed(0), 0.0) is x
    a = random_affine(x, torch.Generator().manual_seed(1), 0.5)
    b = random_affine(x, torch.Generator().manual_seed(1), 0.5)
    assert torch.equal(a, b)
    changed = (a != x).flatten(1).any(1).float().mean()
    assert 0.3 < changed < 0.7
    assert not torch.equal(a, random_affine(x, torch.Generator().manual_seed(2), 0.5))


def test_every_image_gets_a_map_within_the_bounds():
    maps = random_affine_matrices(4096, torch.Generator().manual_seed(0))
    a = maps[:, :, :2]
    det = torch.linalg.det(a)  # 1 / scale^2
    assert ((det >= 1 / 1.1 ** 2 - 1e-5) & (det <= 1 / 0.9 ** 2 + 1e-5)).all()
    angle = torch.rad2deg(torch.atan2(a[:, 0, 1], a[:, 0, 0])).abs()
    assert angle.max() <= MAX_DEGREES + 1e-4 and angle.max() > MAX_DEGREES - 1


def test_a_map_moves_a_dot_by_the_rotation_it_says():
    """The dot centred at (row 13.5, col 19.5) turns about the image centre by the map's angle, scale and shift."""
    x = _dot()
    maps = random_affine_matrices(1, torch.Generator().manual_seed(3))
    theta = math.atan2(float(maps[0, 0, 1]), float(maps[0, 0, 0]))
    scale = 1 / math.sqrt(float(torch.linalg.det(maps[0, :, :2])))
    grid = torch.nn.functional.affine_grid(maps, list(x.shape), align_corners=False)
    y = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    shift = torch.linalg.solve(maps[0, :, :2], -maps[0, :, 2]) * 14  # in pixels (x, y)
    r, c = _centre_of_mass(y)
    dx, dy = 19.5 - 13.5, 13.5 - 13.5
    ex = scale * (math.cos(theta) * dx - math.sin(theta) * dy) + 13.5 + float(shift[0])
    ey = scale * (math.sin(theta) * dx + math.cos(theta) * dy) + 13.5 + float(shift[1])
    assert abs(c - ex) < 0.15 and abs(r - ey) < 0.15
