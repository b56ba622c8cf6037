"""Visual-anagram views and the anagram denoiser (Geng, Park, Owens, "Visual Anagrams"; spec 1.8).

A view v is an orthogonal pixel transform of (B,C,H,W) images (a permutation of pixel positions or a sign
flip), so inverse_view(view(x)) == x exactly and v(eps) of Gaussian noise is again Gaussian noise. That is
what lets one sampler denoise several views of the same x_t at once. Modelled on dangeng/visual_anagrams
``views/``: one class per view with ``view`` / ``inverse_view``, and a name -> factory registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor

from fundiff.core.contract import Denoiser, Joint, Output, as_joint
from fundiff.errors import UserError


class View(Protocol):
    """An orthogonal transform of images x (B,C,H,W), H == W, and its exact inverse."""

    name: str

    def view(self, x: Tensor) -> Tensor: ...

    def inverse_view(self, x: Tensor) -> Tensor: ...


class _Involution:
    """A view that is its own inverse."""

    def inverse_view(self, x: Tensor) -> Tensor:
        return self.view(x)


class IdentityView(_Involution):
    """v(x) = x."""

    name = "identity"

    def view(self, x: Tensor) -> Tensor:
        return x


class FlipView(_Involution):
    """Upside down: v(x)[..., i, j] = x[..., H-1-i, j]."""

    name = "flip"

    def view(self, x: Tensor) -> Tensor:
        return x.flip(-2)


class RotateView:
    """Clockwise rotation by 90 * turns degrees in the (H, W) plane (H pointing down, as displayed)."""

    def __init__(self, turns: int) -> None:
        self.turns = turns % 4
        self.name = f"rotate_{90 * self.turns}"

    def view(self, x: Tensor) -> Tensor:
        return torch.rot90(x, -self.turns, dims=(-2, -1))

    def inverse_view(self, x: Tensor) -> Tensor:
        return torch.rot90(x, self.turns, dims=(-2, -1))


class NegateView(_Involution):
    """v(x) = -x. Only meaningful for models whose data are centred at 0, e.g. [-1, 1]."""

    name = "negate"

    def view(self, x: Tensor) -> Tensor:
        return -x


class TransposeView(_Involution):
    """Reflection in the main diagonal: v(x)[..., i, j] = x[..., j, i]."""

    name = "transpose"

    def view(self, x: Tensor) -> Tensor:
        return x.transpose(-2, -1)


class PermutationView:
    """A fixed permutation of the size x size pixel positions: v(x).flatten(-2)[..., p] = x.flatten(-2)[..., perm[p]].

    Args:
        name: the view's name.
        source: (size, size) long; source[i, j] is the flat index of the input pixel that output pixel (i, j)
            copies (build it by applying the spatial transform to ``arange(size * size).view(size, size)``).
    """

    def __init__(self, name: str, source: Tensor) -> None:
        self.name, self.size = name, source.shape[-1]
        self.perm = source.flatten()
        if not torch.equal(self.perm.sort().values, torch.arange(self.size**2)):
            raise ValueError(f"view {name}: source indices are not a permutation")
        self.inverse = self.perm.argsort()  # perm[inverse[q]] == q

    def view(self, x: Tensor) -> Tensor:
        return self._gather(x, self.perm)

    def inverse_view(self, x: Tensor) -> Tensor:
        return self._gather(x, self.inverse)

    def _gather(self, x: Tensor, index: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != (self.size, self.size):
            raise UserError(f"view {self.name} was made for {self.size}x{self.size} images, "
                            f"got {x.shape[-2]}x{x.shape[-1]}")
        return x.flatten(-2)[..., index.to(x.device)].unflatten(-1, (self.size, self.size))


def _pixel_indices(size: int) -> Tensor:
    """(size, size) long: the flat index of every pixel."""
    return torch.arange(size * size).view(size, size)


def _pieces(image: Tensor, grid: int) -> Tensor:
    """(S, S) -> (grid*grid, S/grid, S/grid): square pieces in row-major order."""
    p = image.shape[-1] // grid
    return image.view(grid, p, grid, p).permute(0, 2, 1, 3).reshape(grid * grid, p, p)


def _assemble(pieces: Tensor, grid: int) -> Tensor:
    """The inverse of :func:`_pieces`: (grid*grid, p, p) -> (grid*p, grid*p)."""
    p = pieces.shape[-1]
    return pieces.view(grid, grid, p, p).permute(0, 2, 1, 3).reshape(grid * p, grid * p)


def _shuffled_pieces(size: int, grid: int, seed: int, rotate: bool) -> Tensor:
    """Source indices of a grid x grid square-piece shuffle (pieces turned clockwise by k*90 if ``rotate``)."""
    if grid < 1 or size % grid:
        raise UserError(f"a {grid}x{grid} grid does not divide a {size}x{size} image into square pieces")
    g = torch.Generator().manual_seed(seed)
    pieces = _pieces(_pixel_indices(size), grid)[torch.randperm(grid * grid, generator=g)]
    if rotate:
        turns = torch.randint(0, 4, (grid * grid,), generator=g).tolist()
        pieces = torch.stack([torch.rot90(piece, -t, dims=(0, 1)) for piece, t in zip(pieces, turns)])
    return _assemble(pieces, grid)


class PatchPermuteView(PermutationView):
    """A grid x grid array of square patches, shuffled by a permutation drawn from ``seed``."""

    def __init__(self, size: int, grid: int, seed: int = 0) -> None:
        super().__init__("patch_permute", _shuffled_pieces(size, grid, seed, rotate=False))


class JigsawView(PermutationView):
    """Square jigsaw: grid x grid pieces shuffled, each also rotated clockwise by a seeded multiple of 90 degrees."""

    def __init__(self, size: int, grid: int, seed: int = 0) -> None:
        super().__init__("jigsaw", _shuffled_pieces(size, grid, seed, rotate=True))


def inner_circle_mask(size: int) -> Tensor:
    """(size, size) bool: pixel centres inside the centred inscribed circle, (2i+1-S)^2 + (2j+1-S)^2 <= S^2.

    Integer arithmetic makes the mask exactly invariant under 90-degree rotation ((i, j) -> (j, S-1-i) maps
    2i+1-S to -(2i+1-S)), so rotating only the inside is a permutation.
    """
    c = 2 * torch.arange(size) + 1 - size
    mask = c[:, None] ** 2 + c[None, :] ** 2 <= size**2
    assert torch.equal(mask, torch.rot90(mask, -1)), "inner circle mask is not rotation invariant"
    return mask


class InnerRotateView(PermutationView):
    """Pixels inside the centred inscribed circle rotated 90 degrees clockwise; the rest unchanged."""

    def __init__(self, size: int) -> None:
        idx = _pixel_indices(size)
        super().__init__("inner_rotate", torch.where(inner_circle_mask(size), torch.rot90(idx, -1), idx))


def patch_grid(size: int) -> int:
    """The grid g of the patch views: 4 if it divides ``size``, else 2, else a UserError."""
    for g in (4, 2):
        if size % g == 0:
            return g
    raise UserError(f"patch views need an image side divisible by 2 or 4; got {size}")


_FACTORIES: dict[str, Callable[[int], View]] = {
    "identity": lambda size: IdentityView(),
    "flip": lambda size: FlipView(),
    "rotate_90": lambda size: RotateView(1),
    "rotate_180": lambda size: RotateView(2),
    "rotate_270": lambda size: RotateView(3),
    "negate": lambda size: NegateView(),
    "transpose": lambda size: TransposeView(),
    "patch_permute": lambda size: PatchPermuteView(size, patch_grid(size)),
    "jigsaw": lambda size: JigsawView(size, patch_grid(size)),
    "inner_rotate": lambda size: InnerRotateView(size),
}
VIEW_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_view(name: str, size: int) -> View:
    """The view called ``name`` for size x size images."""
    if name not in _FACTORIES:
        raise UserError(f"unknown view {name!r}; known views: {', '.join(VIEW_NAMES)}")
    if size < 1:
        raise UserError(f"image size must be positive, got {size}")
    return _FACTORIES[name](size)


def mean_variance(preds: Sequence[Output]) -> Tensor | None:
    """The mean of the predictions' learned variances (untransformed, spec 1.8), None if none has one."""
    variances = [p.variance for p in preds if p.variance is not None]
    return torch.stack(variances).mean(0) if variances else None


def anagram_denoiser(eps_fns: Sequence[Denoiser] | Joint, views: Sequence[View]) -> Denoiser:
    """eps = (1/n) sum_i v_i^-1(eps_i(v_i(x_t), k)); the variance is averaged, not transformed (spec 1.8).

    With views (identity, flip) this is spec 1.8: eps = (UNet(x_t, t, p1) + flip(UNet(flip(x_t), t, p2))) / 2.
    ``eps_fns`` is one denoiser per view, or a :data:`~fundiff.core.contract.Joint` computing them together.
    """
    given = len(eps_fns) if not callable(eps_fns) else len(views)
    if given != len(views) or len(views) < 2:
        raise UserError(f"an anagram needs one denoiser per view and at least 2 views; "
                        f"got {given} denoisers and {len(views)} views")
    joint, views = as_joint(eps_fns), list(views)

    def anagram(x_t: Tensor, k: Tensor) -> Output:
        preds = joint([v.view(x_t) for v in views], k)
        eps = torch.stack([v.inverse_view(p.value) for p, v in zip(preds, views)]).mean(0)
        return preds[0].with_value(eps, mean_variance(preds))

    return anagram
