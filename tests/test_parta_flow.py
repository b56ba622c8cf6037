"""Flow-matching models in every Part A operation (generate, noise, denoise, edit, inpaint, anagram, hybrid):
an oracle flow model with known answers, and the tiny trained flow run (``flow_run``) end to end."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import assert_one_line_error, run_cli

from fundiff import parta as ops
from fundiff.core.bands import gaussian_lowpass
from fundiff.core.contract import Velocity
from fundiff.core.model import DiffusionModel
from fundiff.core.sampling import Sampling
from fundiff.core.schedule import FlowPath
from fundiff.errors import UserError
from fundiff.models import load

SIZE, T = 8, 300


def flow_oracle(targets: torch.Tensor) -> DiffusionModel:
    """A class flow model whose velocity for class c points straight at targets[c] (null class: their mean):
    u(x_t, t) = (x_1 - x_t) / (1 - t), so Euler lands on x_1 exactly from anywhere on any grid."""

    def bind(c):
        x1 = targets.mean(0) if c is None else targets[c]

        def velocity(x_t, t):
            assert t.dtype == torch.float32 and bool(((0 <= t) & (t < 1)).all()), t
            return Velocity((x1 - x_t) / (1 - t).reshape(-1, 1, 1, 1))

        return velocity

    card = Sampling(sampler="euler", clip=False, guidance=1.0, guidance_interval=(0.0, 1.0))  # ~3% stride: 34 steps
    return DiffusionModel("flow-oracle", FlowPath(T), SIZE, 1, (0.0, 1.0), "class", bind, card,
                          num_classes=len(targets))


@pytest.fixture
def targets() -> torch.Tensor:
    return torch.rand((3, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(0))


# ---- known answers with the oracle ----------------------------------------------------------------------

def test_flow_settings_and_errors(targets):
    m = flow_oracle(targets)
    assert m.is_flow and "flow-matching" in repr(m) and "\n" not in repr(m)
    assert ops.settings(m).sampler == "euler" and len(ops.timesteps(m, ops.settings(m))) == 34
    for sampler in ("ddpm", "ddim"):
        with pytest.raises(UserError, match="flow-matching model: it samples with euler"):
            ops.generate(m, 0, sampling=Sampling(sampler=sampler))


def test_flow_generate_lands_on_the_class_image_and_cfg_extrapolates(targets):
    m = flow_oracle(targets)
    ts = []
    x = ops.generate(m, 1, 2, seed=3, callback=lambda d: ts.append(d["k"]))
    torch.testing.assert_close(x, targets[1].expand(2, -1, -1, -1), atol=1e-5, rtol=0)
    assert ts == pytest.approx([(T - 1 - k) / T for k in range(297, -1, -9)])  # levels are flow times
    assert torch.equal(x, ops.generate(m, 1, 2, seed=3))
    # CFG on velocities: u_u + g (u_c - u_u) points at mean + g (x_c - mean)
    mean = targets.mean(0)
    guided = ops.generate(m, 2, 1, guidance=1.5, seed=0)
    torch.testing.assert_close(guided[0], (mean + 1.5 * (targets[2] - mean)).clamp(0, 1), atol=1e-5, rtol=0)


def test_flow_noise_is_the_straight_path(targets):
    m = flow_oracle(targets)
    noisy = ops.noise(m, targets[:1], [0, 150, 299], seed=5)
    g = torch.Generator().manual_seed(5)
    for k, x_t in zip([0, 150, 299], noisy):
        t = (T - 1 - k) / T
        eps = torch.randn((1, 1, SIZE, SIZE), generator=g)
        torch.testing.assert_close(x_t, ((1 - t) * eps + t * targets[:1]).clamp(0, 1))


def test_flow_denoise_three_ways(targets):
    m = flow_oracle(targets)
    res = ops.denoise(m, targets[:1], 150, condition=0, seed=1)
    torch.testing.assert_close(res["one_step"], targets[:1], atol=1e-5, rtol=0)
    torch.testing.assert_close(res["iterative"], targets[:1], atol=1e-5, rtol=0)
    assert res["timesteps"][0] == 150 and all(res["timesteps"][1:] < 150)
    assert res["strip"].shape[1:] == (1, 1, SIZE, SIZE) and res["strip"].shape[0] >= 3
    assert (res["blur"] - targets[:1]).abs().mean() > 0.01


def test_flow_edit_goes_to_the_asked_class_and_each_i_start_is_reproducible(targets):
    m = flow_oracle(targets)
    out = ops.edit(m, targets[:1], 1, [1, 30], seed=0)
    for i in (1, 30):
        torch.testing.assert_close(out[i], targets[1:2], atol=1e-5, rtol=0)
    assert torch.equal(ops.edit(m, targets[:1], 1, [30], seed=0)[30], out[30])
    with pytest.raises(UserError, match="i_start 34 is outside 0..33"):
        ops.edit(m, targets[:1], 1, [34])


def test_flow_inpaint_keeps_the_outside_and_fills_the_inside(targets):
    m = flow_oracle(targets)
    x0 = torch.rand((1, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(9))
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., :3, 2:6] = 1
    out = ops.inpaint(m, x0, mask, condition=2, seed=0)
    assert torch.equal(out[mask == 0], x0[mask == 0])
    torch.testing.assert_close(out[mask == 1], targets[2:3][mask == 1], atol=1e-5, rtol=0)


def test_flow_anagram_with_two_oracles_satisfies_both_views(targets):
    a = targets[0]
    m = flow_oracle(torch.stack([a, a.flip(-2)]))
    x = ops.anagram(m, [0, 1], ["identity", "flip"], n=2, seed=0)
    torch.testing.assert_close(x, a.expand(2, -1, -1, -1), atol=1e-5, rtol=0)


def test_flow_hybrid_is_low_of_one_and_high_of_the_other(targets):
    m = flow_oracle(targets)
    x = ops.hybrid(m, [0, 1], n=1, kernel=5, sigmas=[1.0])
    low = gaussian_lowpass(targets[:1], 5, 1.0)
    expected = low + (targets[1:2] - gaussian_lowpass(targets[1:2], 5, 1.0))
    torch.testing.assert_close(x, expected.clamp(0, 1), atol=1e-5, rtol=0)


# ---- the tiny trained flow run ---------------------------------------------------------------------------

FAST = Sampling(steps=10)


@pytest.fixture(scope="module")
def flow(flow_run) -> DiffusionModel:
    return load(flow_run, "cpu")


@pytest.fixture(scope="module")
def digit(small_digits) -> torch.Tensor:
    return small_digits.images[:1].float()


def test_flow_run_loads_as_a_velocity_model(flow):
    assert flow.is_flow and isinstance(flow.schedule, FlowPath) and flow.conditioning == "none"
    assert (flow.sampling.sampler, flow.sampling.steps) == ("dpmpp-2m", 20)  # the default recipe's card
    assert flow.illusions().sampler == "euler"
    out = flow.denoiser(None)(torch.zeros(2, 1, 28, 28), torch.tensor([0.25, 0.25]))
    assert isinstance(out, Velocity) and out.v.shape == (2, 1, 28, 28)
    r = repr(flow)
    assert "\n" not in r and "flow-matching" in r and "unconditional" in r and len(r) < 200


def test_flow_run_generate(flow):
    x = ops.generate(flow, None, 2, seed=1, sampling=FAST)
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, ops.generate(flow, None, 2, seed=1, sampling=FAST))
    assert not torch.equal(x, ops.generate(flow, None, 2, seed=2, sampling=FAST))


def test_flow_run_noise(flow, digit):
    ks = [0, 150, 299]
    noisy = ops.noise(flow, digit, ks, seed=4)
    g = torch.Generator().manual_seed(4)
    for k, x_t in zip(ks, noisy):
        t = (flow.schedule.T - 1 - k) / flow.schedule.T
        eps = torch.randn(digit.shape, generator=g)
        torch.testing.assert_close(x_t, ((1 - t) * eps + t * digit).clamp(0, 1))


def test_flow_run_denoise(flow, digit):
    res = ops.denoise(flow, digit, 150, seed=2, sampling=FAST)
    assert set(res) == {"noisy", "blur", "one_step", "iterative", "strip", "timesteps"}
    assert res["timesteps"][0] == 150 and all(res["timesteps"][1:] < 150)
    for key in ("noisy", "blur", "one_step", "iterative"):
        assert res[key].shape == (1, 1, 28, 28) and torch.isfinite(res[key]).all(), key
    # one step: x_t + (1 - t) u(x_t, t) at t = 149 / 300, from the unclamped x_t
    g = torch.Generator().manual_seed(2)
    t = 149 / 300
    x_t = (1 - t) * torch.randn(digit.shape, generator=g) + t * digit
    u = flow.denoiser(None)(x_t, torch.full((1,), t)).v
    torch.testing.assert_close(res["one_step"], (x_t + (1 - t) * u).clamp(0, 1), atol=1e-5, rtol=0)


def test_flow_run_edit(flow, digit):
    out = ops.edit(flow, digit, None, [2, 8], seed=3, sampling=FAST)
    assert set(out) == {2, 8} and all(x.shape == (1, 1, 28, 28) and torch.isfinite(x).all() for x in out.values())
    assert torch.equal(ops.edit(flow, digit, None, [8], seed=3, sampling=FAST)[8], out[8])
    # a late start stays nearer the input than an early one
    assert (out[8] - digit).abs().mean() < (out[2] - digit).abs().mean()


def test_flow_run_inpaint(flow, digit):
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 8:20, 8:20] = 1
    out = ops.inpaint(flow, digit, mask, seed=0, sampling=FAST)
    assert torch.equal(out[mask == 0], digit[mask == 0])
    assert not torch.equal(out, digit) and torch.isfinite(out).all()


def test_flow_run_anagram_and_hybrid(flow):
    """Illusions sample with the card's illusion defaults (Euler); plain Euler sampling is what they reduce to."""
    x = ops.generate(flow, None, 2, seed=5, sampling=Sampling(sampler="euler", steps=10))
    a = ops.anagram(flow, [None, None], ["identity", "flip"], n=2, seed=5, sampling=FAST)
    assert a.shape == (2, 1, 28, 28) and torch.isfinite(a).all() and not torch.allclose(a, x)
    # with two identity views the anagram is plain sampling, and bands that sum to the identity are too
    same = ops.anagram(flow, [None, None], ["identity", "identity"], n=2, seed=5, sampling=FAST)
    torch.testing.assert_close(same, x, atol=1e-6, rtol=0)
    h = ops.hybrid(flow, [None, None], n=2, seed=5, sampling=FAST)
    assert h.shape == (2, 1, 28, 28)
    torch.testing.assert_close(h, x, atol=1e-3, rtol=0)


def test_flow_run_through_the_cli(flow_run, tmp_path):
    out = tmp_path / "g"
    proc = run_cli("generate", "--model", flow_run, "--n", "1", "--steps", "4", "--out", out)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((out / "args.json").read_text())
    assert rec["sampling"]["sampler"] == "dpmpp-2m" and rec["model"]["process"] == "flow"
    assert (out / "sample_00.png").is_file()
    assert_one_line_error(run_cli("generate", "--model", flow_run, "--sampler", "ddpm", "--out", tmp_path / "x"),
                          "euler")
