"""Colour hybrids (factorized diffusion): core/colour.py's greyscale and colour components and their denoiser,
fundiff.parta.colour_hybrid on the tiny DeepFloyd IF models, and ``fundiff colour-hybrid`` end to end (in-process).

Exactness: in exact arithmetic g + c = I, g(c(x)) = 0 and g(grey) = grey. In floating point the channel mean
rounds, so the bitwise checks use images on a lattice where every sum and mean is exact (integers whose channel
sums are multiples of 3); random images are checked to float rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import fundiff_in_process
from PIL import Image

from fundiff.core.colour import colour_component, colour_hybrid_denoiser, greyscale_component
from fundiff.core.contract import Prediction, Velocity
from fundiff.errors import UserError

K = torch.tensor([10, 10])
GREY, COLOUR = "a lithograph of a skull", "a lithograph of waterfalls"
fundiff = fundiff_in_process


def rand(shape=(2, 3, 16, 16), seed=0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def lattice(shape=(2, 3, 16, 16), seed=0) -> torch.Tensor:
    """Integer images whose channel sums are multiples of 3: their g and c are computed without rounding."""
    g = torch.Generator().manual_seed(seed)
    b, _, h, w = shape
    a, c, m = (torch.randint(-8, 9, (b, 1, h, w), generator=g) for _ in range(3))
    return torch.cat([a, c, 3 * m - a - c], 1).float()


# --- core/colour.py: the decomposition ---------------------------------------------------------------------------

def test_components_sum_to_the_identity():
    x = lattice()
    assert torch.equal(greyscale_component(x) + colour_component(x), x)
    y = rand()
    torch.testing.assert_close(greyscale_component(y) + colour_component(y), y, atol=1e-6, rtol=0)


def test_greyscale_of_the_colour_component_is_zero():
    x = lattice()
    assert torch.equal(greyscale_component(colour_component(x)), torch.zeros_like(x))
    y = rand()
    torch.testing.assert_close(greyscale_component(colour_component(y)), torch.zeros_like(y), atol=1e-6, rtol=0)


def test_a_grey_image_is_its_own_greyscale_and_has_no_colour():
    v = torch.randint(-100, 101, (2, 1, 16, 16), generator=torch.Generator().manual_seed(3)).float()
    grey = v.expand(2, 3, 16, 16)
    assert torch.equal(greyscale_component(grey), grey)
    assert torch.equal(colour_component(grey), torch.zeros_like(grey))
    r = rand((2, 1, 16, 16)).expand(2, 3, 16, 16)
    torch.testing.assert_close(greyscale_component(r), r, atol=1e-6, rtol=0)


def test_greyscale_is_the_channel_mean_and_a_projection():
    y = rand()
    g = greyscale_component(y)
    assert g.shape == y.shape
    torch.testing.assert_close(g[:, 0], y.mean(1))
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    torch.testing.assert_close(greyscale_component(g), g, atol=1e-6, rtol=0)


# --- core/colour.py: the denoiser ---------------------------------------------------------------------------------

def test_colour_hybrid_takes_greyscale_of_one_and_colour_of_the_other():
    x, e1, e2 = lattice(), lattice(seed=1), lattice(seed=2)
    v1, v2 = torch.full_like(x, 0.5), torch.linspace(-1, 1, 16).expand(2, 3, 16, 16)
    seen = []

    def f1(x_t, k):
        seen.append((x_t, k))
        return Prediction(e1, v1)

    def f2(x_t, k):
        seen.append((x_t, k))
        return Prediction(e2, v2)

    out = colour_hybrid_denoiser([f1, f2])(x, K)
    assert len(seen) == 2 and all(x_t is x and k is K for x_t, k in seen)
    assert torch.equal(greyscale_component(out.eps), greyscale_component(e1))
    assert torch.equal(colour_component(out.eps), colour_component(e2))
    torch.testing.assert_close(out.variance, (v1 + v2) / 2)  # averaged, not decomposed


def test_colour_hybrid_on_random_estimates():
    x, e1, e2 = rand(), rand(seed=1), rand(seed=2)
    out = colour_hybrid_denoiser([lambda x_t, k: Prediction(e1 + x_t), lambda x_t, k: Prediction(e2)])(x, K)
    torch.testing.assert_close(out.eps, greyscale_component(e1 + x) + e2 - greyscale_component(e2))
    assert out.variance is None
    torch.testing.assert_close(greyscale_component(out.eps), greyscale_component(e1 + x), atol=1e-6, rtol=0)
    torch.testing.assert_close(colour_component(out.eps), colour_component(e2), atol=1e-6, rtol=0)


def test_colour_hybrid_of_one_denoiser_twice_is_that_denoiser():
    x, e = rand(), rand(seed=1)
    out = colour_hybrid_denoiser([lambda x_t, k: Prediction(e + x_t)] * 2)(x, K)
    torch.testing.assert_close(out.eps, e + x, atol=1e-6, rtol=0)


def test_colour_hybrid_of_velocities_is_a_velocity():
    x, y1, y2 = rand(), rand(seed=1), rand(seed=2)
    out = colour_hybrid_denoiser([lambda x_t, t: Velocity(y1), lambda x_t, t: Velocity(y2)])(x, torch.tensor([.5, .5]))
    assert isinstance(out, Velocity) and out.variance is None
    torch.testing.assert_close(out.v, greyscale_component(y1) + colour_component(y2))


@pytest.mark.parametrize("count", [1, 3])
def test_colour_hybrid_needs_two_denoisers(count):
    with pytest.raises(UserError, match=f"2 denoisers .*got {count}"):
        colour_hybrid_denoiser([lambda x_t, k: Prediction(x_t)] * count)


# --- fundiff.parta.colour_hybrid ----------------------------------------------------------------------------------

def test_api_refuses_a_one_channel_model_and_wrong_prompt_counts():
    from fundiff import parta as ops
    from fundiff.models import load

    digits = load("digits", "cpu")
    with pytest.raises(UserError, match="^colour hybrids need an RGB model; model digits draws 1 channel$"):
        ops.colour_hybrid(digits, [1, 7])
    model = _tiny_model()
    for bad in (["a pencil"], ["a pencil", "a dog", "a rocket ship"], "ab"):
        with pytest.raises(UserError, match="takes 2 prompts"):
            ops.colour_hybrid(model, bad)


def _tiny_model():
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    pytest.importorskip("sentencepiece")
    from tiny_if import tiny_if

    from fundiff.models import load_diffusion_model

    tiny = tiny_if()
    return load_diffusion_model(str(tiny.stage1), prompt_cache=tiny.cache)


@pytest.fixture(scope="module")
def tiny_model():
    return _tiny_model()


def _fast():
    from fundiff.core.sampling import Sampling

    return Sampling(stride=250)  # 750, 500, 250, 0


def test_api_on_tiny_deepfloyd(tiny_model):
    from fundiff import parta as ops

    a = ops.colour_hybrid(tiny_model, [GREY, COLOUR], 2, seed=5, sampling=_fast())
    assert a.shape == (2, 3, 64, 64) and 0 <= a.min() and a.max() <= 1 and torch.isfinite(a).all()
    assert torch.equal(a, ops.colour_hybrid(tiny_model, [GREY, COLOUR], 2, seed=5, sampling=_fast()))
    assert not torch.equal(a, ops.colour_hybrid(tiny_model, [GREY, COLOUR], 2, seed=6, sampling=_fast()))
    assert not torch.equal(a, ops.colour_hybrid(tiny_model, [COLOUR, GREY], 2, seed=5, sampling=_fast()))


def test_api_with_one_prompt_twice_is_plain_sampling(tiny_model):
    """g(eps) + c(eps) = eps: a colour hybrid of P and P samples P (to float rounding)."""
    from fundiff import parta as ops

    hybrid = ops.colour_hybrid(tiny_model, [GREY, GREY], 1, seed=2, sampling=_fast())
    plain = ops.generate(tiny_model, GREY, 1, seed=2, sampling=_fast())
    torch.testing.assert_close(hybrid, plain, atol=1e-4, rtol=0)


def test_stage2_colour_hybrid_of_one_prompt_twice_is_plain_upsampling(tiny_model):
    from tiny_if import tiny_if

    from fundiff.models.deepfloyd.stage2 import load_upsampler, upsample, upsample_colour_hybrid

    up = load_upsampler(tiny_model, str(tiny_if().stage2))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    hr = upsample_colour_hybrid(up, x, [GREY, COLOUR], seed=1, sampling=_fast())
    assert hr.shape == (1, 3, 256, 256) and torch.isfinite(hr).all()
    torch.testing.assert_close(upsample_colour_hybrid(up, x, [GREY, GREY], seed=1, sampling=_fast()),
                               upsample(up, x, GREY, seed=1, sampling=_fast()), atol=1e-4, rtol=0)


# --- fundiff colour-hybrid ----------------------------------------------------------------------------------------

def _cli(monkeypatch, capsys, out: Path, *extra, seed: int = 3) -> tuple[int, str, str]:
    from tiny_if import tiny_if

    tiny = tiny_if()
    return fundiff(monkeypatch, capsys, "colour-hybrid", "--grey", GREY, "--colour", COLOUR, "--n", 2,
                   "--model", tiny.stage1, "--cache", tiny.cache, "--stride", 330, "--seed", seed, *extra,
                   "--out", out)


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_cli_end_to_end_with_stage_two(tmp_path, monkeypatch, capsys, tiny_model):
    from tiny_if import tiny_if

    out = tmp_path / "ch"
    code, stdout, err = _cli(monkeypatch, capsys, out, "--stage-2", tiny_if().stage2, "--steps-2", 1)
    assert code == 0, err
    args = json.loads((out / "args.json").read_text())
    assert args["command"] == "colour-hybrid" and args["seed"] == 3 and args["stage_2"]["image_size"] == 256
    assert args["args"]["grey"] == GREY and args["args"]["colour"] == COLOUR and args["args"]["n"] == 2
    expected = ["colour_hybrid_00.png", "colour_hybrid_01.png", "colour_hybrid.png", "colour_hybrid_256_00.png",
                "colour_hybrid_256_00_grey.png", "colour_hybrid_256_01_grey.png", "colour_hybrid_256_grid.png"]
    assert all(name in args["files"] for name in expected) and all((out / name).is_file() for name in expected)
    assert Image.open(out / "colour_hybrid_00.png").size == (64, 64)
    assert Image.open(out / "colour_hybrid_256_01.png").size == (256, 256)
    grey = _pixels(out / "colour_hybrid_256_01_grey.png")
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    grid = _pixels(out / "colour_hybrid.png")
    right = grid[:, grid.shape[1] // 2 + 4:]  # the greyscale column
    assert (right[..., 0] == right[..., 2]).all() and not (grid[..., 0] == grid[..., 2]).all()
    assert "wrote" in stdout


def test_cli_same_seed_same_bytes(tmp_path, monkeypatch, capsys, tiny_model):
    runs = {name: _cli(monkeypatch, capsys, tmp_path / name, seed=seed)
            for name, seed in (("a", 7), ("b", 7), ("c", 8))}
    assert all(code == 0 for code, _, _ in runs.values()), runs
    for name in ("colour_hybrid_00.png", "colour_hybrid_01.png", "colour_hybrid.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "colour_hybrid.png").read_bytes() != (tmp_path / "c" / "colour_hybrid.png").read_bytes()


def test_cli_refuses_the_one_channel_digit_model_in_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "never"
    code, _, err = fundiff(monkeypatch, capsys, "colour-hybrid", "--grey", "1", "--colour", "7", "--model", "digits",
                           "--out", out)
    lines = err.strip().splitlines()
    assert code != 0 and lines == ["fundiff: error: colour hybrids need an RGB model; model digits draws 1 channel"]
    assert not out.exists()
