"""core/views.py: exact inverses, orthogonality, the registry, and the anagram denoiser."""

from __future__ import annotations

import pytest
import torch

from fundiff.core.model import Prediction
from fundiff.core.views import VIEW_NAMES, anagram_denoiser, inner_circle_mask, make_view
from fundiff.errors import UserError

SHAPES = [(2, c, s, s) for s in (28, 64) for c in (1, 3)]
K = torch.tensor([10, 10])


def rand(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_all_views():
    assert set(VIEW_NAMES) == {"identity", "flip", "rotate_90", "rotate_180", "rotate_270", "negate", "transpose",
                               "patch_permute", "jigsaw", "inner_rotate"}
    for name in VIEW_NAMES:
        assert make_view(name, 28).name == name


@pytest.mark.parametrize("name", VIEW_NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_inverse_view_undoes_view_exactly(name, shape):
    v, x = make_view(name, shape[-1]), rand(shape)
    assert torch.equal(v.inverse_view(v.view(x)), x)
    assert torch.equal(v.view(v.inverse_view(x)), x)


@pytest.mark.parametrize("name", VIEW_NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_view_is_a_pixel_permutation_or_sign_flip(name, shape):
    v, x = make_view(name, shape[-1]), rand(shape)
    y = v.view(x)
    assert y.shape == x.shape
    if name == "negate":
        assert torch.equal(y, -x)
        return
    for xb, yb in zip(x.flatten(1), y.flatten(1)):  # each image's values are merely rearranged
        assert torch.equal(xb.sort().values, yb.sort().values)
    s = shape[-1]  # one spatial permutation p, the same for every channel and batch element
    p = v.view(torch.arange(s * s, dtype=torch.float64).view(1, 1, s, s)).flatten().long()
    assert torch.equal(p.sort().values, torch.arange(s * s))
    assert torch.equal(y, x.flatten(-2)[..., p].view(shape))


@pytest.mark.parametrize("name", VIEW_NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_views_preserve_the_norm_and_gaussianity(name, shape):
    v = make_view(name, shape[-1])
    eps = rand(shape, seed=1)
    out = v.view(eps)
    assert torch.equal(out.abs().flatten().sort().values, eps.abs().flatten().sort().values)  # same |values|
    torch.testing.assert_close(out.norm(), eps.norm())
    big = rand((64, shape[1], shape[2], shape[3]), seed=2)
    out = v.view(big)
    assert abs(out.mean().item()) < 0.02 and abs(out.std().item() - 1) < 0.02


@pytest.mark.parametrize("name", [n for n in VIEW_NAMES if n not in ("identity", "negate")])
def test_non_trivial_views_move_pixels(name):
    x = rand((1, 1, 28, 28))
    assert not torch.equal(make_view(name, 28).view(x), x)


def test_flip_is_upside_down_and_rotations_are_clockwise():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    assert torch.equal(make_view("flip", 2).view(x), torch.tensor([[3.0, 4.0], [1.0, 2.0]]).view(1, 1, 2, 2))
    assert torch.equal(make_view("rotate_90", 2).view(x), torch.tensor([[3.0, 1.0], [4.0, 2.0]]).view(1, 1, 2, 2))
    assert torch.equal(make_view("rotate_270", 2).view(x), torch.tensor([[2.0, 4.0], [1.0, 3.0]]).view(1, 1, 2, 2))
    assert torch.equal(make_view("transpose", 2).view(x), torch.tensor([[1.0, 3.0], [2.0, 4.0]]).view(1, 1, 2, 2))


@pytest.mark.parametrize("shape", SHAPES)
def test_rotations_compose(shape):
    x, s = rand(shape), shape[-1]
    r90, r180, r270 = (make_view(n, s) for n in ("rotate_90", "rotate_180", "rotate_270"))
    assert torch.equal(r270.view(r90.view(x)), x)
    assert torch.equal(r90.view(r90.view(x)), r180.view(x))
    assert torch.equal(r180.view(r180.view(x)), x)


@pytest.mark.parametrize("size", [28, 64, 7, 30])
def test_inner_rotate_turns_only_the_inscribed_circle(size):
    mask = inner_circle_mask(size)
    assert torch.equal(mask, torch.rot90(mask, 1)) and mask[size // 2, size // 2] and not mask[0, 0]
    x = rand((1, 1, size, size))
    y = make_view("inner_rotate", size).view(x)
    assert torch.equal(y[..., ~mask], x[..., ~mask])
    assert torch.equal(y[..., mask], torch.rot90(x, -1, dims=(-2, -1))[..., mask])


def test_patch_permute_moves_whole_patches():
    x = torch.arange(4 * 4, dtype=torch.float32).view(4, 4).repeat_interleave(7, 0).repeat_interleave(7, 1)
    y = make_view("patch_permute", 28).view(x.view(1, 1, 28, 28))[0, 0]
    pieces = y.view(4, 7, 4, 7).permute(0, 2, 1, 3).reshape(16, 49)
    assert all(p.unique().numel() == 1 for p in pieces)  # every 7x7 patch is still one patch
    assert sorted(pieces[:, 0].tolist()) == list(range(16))


def test_bad_names_and_sizes_raise_user_errors():
    with pytest.raises(UserError, match="unknown view 'mirror'; known views: identity, flip, rotate_90"):
        make_view("mirror", 64)
    with pytest.raises(UserError, match="divisible"):
        make_view("jigsaw", 27)
    with pytest.raises(UserError, match="28x28"):
        make_view("patch_permute", 28).view(torch.zeros(1, 1, 64, 64))


def identity_fn(x_t, k):
    return Prediction(x_t.clone())


def test_anagram_of_identity_denoisers_returns_x_t():
    views = [make_view(n, 28) for n in ("identity", "flip", "jigsaw")]
    x = rand((2, 3, 28, 28))
    torch.testing.assert_close(anagram_denoiser([identity_fn] * 3, views)(x, K).eps, x)


def test_anagram_is_the_spec_average_with_untransformed_variance():
    x, y1, y2 = rand((2, 1, 28, 28)), rand((2, 1, 28, 28), 1), rand((2, 1, 28, 28), 2)
    v1, v2 = torch.full_like(x, 0.5), torch.linspace(-1, 1, 28).expand(2, 1, 28, 28)
    seen = []

    def f1(x_t, k):
        seen.append(x_t)
        return Prediction(y1 + x_t, v1)

    def f2(x_t, k):
        seen.append(x_t)
        return Prediction(y2 + x_t, v2)

    out = anagram_denoiser([f1, f2], [make_view("identity", 28), make_view("flip", 28)])(x, K)
    assert torch.equal(seen[0], x) and torch.equal(seen[1], x.flip(-2))
    torch.testing.assert_close(out.eps, ((y1 + x) + (y2 + x.flip(-2)).flip(-2)) / 2)
    torch.testing.assert_close(out.variance, (v1 + v2) / 2)  # averaged, not flipped


@pytest.mark.parametrize("name", VIEW_NAMES)
def test_equivariant_denoisers_agree_on_one_estimate(name):
    """If eps_i(v_i(x)) = v_i(y) for every view, the anagram returns exactly y."""
    y = rand((2, 3, 28, 28), 3)
    views = [make_view("identity", 28), make_view(name, 28)]
    fns = [lambda x_t, k, v=v: Prediction(v.view(y)) for v in views]
    out = anagram_denoiser(fns, views)(rand((2, 3, 28, 28)), K)
    torch.testing.assert_close(out.eps, y)
    assert out.variance is None


def test_anagram_needs_one_denoiser_per_view_and_two_views():
    with pytest.raises(UserError, match="at least 2 views"):
        anagram_denoiser([identity_fn], [make_view("flip", 28)])
    with pytest.raises(UserError, match="2 denoisers and 3 views"):
        anagram_denoiser([identity_fn] * 2, [make_view("flip", 28)] * 3)


def test_anagram_of_velocities_is_a_velocity():
    """Flow models: the same average over views, on velocities."""
    from fundiff.core.contract import Velocity

    x, y1, y2 = rand((2, 1, 28, 28)), rand((2, 1, 28, 28), 1), rand((2, 1, 28, 28), 2)
    t = torch.tensor([0.25, 0.25])
    out = anagram_denoiser([lambda x_t, t: Velocity(y1 + x_t), lambda x_t, t: Velocity(y2 + x_t)],
                           [make_view("identity", 28), make_view("rotate_90", 28)])(x, t)
    assert isinstance(out, Velocity) and out.variance is None
    rot = make_view("rotate_90", 28)
    torch.testing.assert_close(out.v, ((y1 + x) + rot.inverse_view(y2 + rot.view(x))) / 2)
