"""fundiff.parta and core.edits: Part A operations on a tiny model with known answers."""

from __future__ import annotations

import pytest
import torch

from fundiff import parta as ops
from fundiff.core import edits
from fundiff.core.loop import make_step
from fundiff.core.model import DiffusionModel, Prediction
from fundiff.core.sampling import Sampling
from fundiff.core.schedule import forward_process, linear_schedule
from fundiff.errors import UserError

SIZE = 8


def oracle_model(targets: torch.Tensor, learned: bool = False) -> DiffusionModel:
    """A class model whose denoiser for class c knows the clean image targets[c] (null class: their mean):
    eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)."""
    schedule = linear_schedule(300)

    def bind(c):
        x0 = targets.mean(0) if c is None else targets[c]

        def eps_fn(x_t, k):
            abar = schedule.abar(k).to(x_t.dtype).reshape(-1, 1, 1, 1)
            eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
            return Prediction(eps, torch.zeros_like(eps) if learned else None)

        return eps_fn

    # the spec's Part A loop as the card's defaults: ~3% stride, posterior (or learned) variance, clip, CFG everywhere
    card = Sampling(sampler="ddpm", variance="learned" if learned else "posterior", clip=True, guidance=1.0,
                    guidance_interval=(0.0, 1.0))
    return DiffusionModel("oracle", schedule, SIZE, 1, (0.0, 1.0), "class", bind, card, learned_variance=learned,
                          num_classes=len(targets), light_on_dark=True)


@pytest.fixture
def targets() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand((3, 1, SIZE, SIZE), generator=g)


def test_default_timesteps_are_about_three_percent_of_T(targets):
    assert ops.Sampling().timesteps(1000) == list(range(990, -1, -30))
    assert len(ops.Sampling().timesteps(300)) == 34
    assert ops.Sampling(steps=10).timesteps(300)[0] == 299
    with pytest.raises(UserError, match="not both"):
        ops.Sampling(stride=3, steps=10).timesteps(300)
    with pytest.raises(UserError, match="sampler"):
        ops.Sampling(sampler="magic")
    with pytest.raises(UserError, match="sampler ddpm, ddim or dpmpp-2m"):
        ops.settings(oracle_model(targets), ops.Sampling(sampler="euler"))  # euler is for flow models
    spec = ops.spec_part_a(oracle_model(targets))
    assert spec.timesteps(300) == list(range(297, -1, -9)) and spec.variance == "posterior"
    assert spec.guidance_interval == (0.0, 1.0) and spec.clip
    assert ops.spec_part_a(oracle_model(targets, learned=True)).variance == "learned"


def test_generate_with_the_oracle_lands_on_the_class_image(targets):
    m = oracle_model(targets)
    x = ops.generate(m, 1, 2, seed=3)
    torch.testing.assert_close(x, targets[1].expand(2, -1, -1, -1), atol=1e-4, rtol=0)
    assert torch.equal(x, ops.generate(m, 1, 2, seed=3)), "same seed, same image"


def test_sdedit_from_i_start_zero_of_pure_noise_equals_sampling(targets):
    """Sampling is the strided loop from x_T ~ N(0, I) at timesteps[0]: the same draws give the same image."""
    m = oracle_model(targets)
    s = ops.settings(m, ops.Sampling(clip=False))
    ts = s.timesteps(300)
    g = torch.Generator().manual_seed(7)
    x_T = torch.randn((2, 1, SIZE, SIZE), generator=g)
    step = make_step(m.schedule, s, m.value_range)
    via_edit = edits.iterative_denoise(m.denoiser(2), x_T, ts, 0, m.schedule, step, g)
    torch.testing.assert_close(via_edit, ops.generate(m, 2, 2, seed=7, sampling=s), atol=1e-6, rtol=0)


def test_edit_from_a_late_i_start_stays_close_and_each_i_start_is_reproducible(targets):
    m = oracle_model(targets)
    x0 = targets[:1]
    out = ops.edit(m, x0, 0, [1, 30], seed=0)
    torch.testing.assert_close(out[30], x0, atol=0.05, rtol=0)
    alone = ops.edit(m, x0, condition=0, i_starts=[30], seed=0)[30]
    assert torch.equal(alone, out[30]), "one i_start's result does not depend on the others"


def test_edit_and_denoise_reject_i_start_and_t_out_of_range(targets):
    m = oracle_model(targets)
    with pytest.raises(UserError, match="i_start 34 is outside 0..33"):
        ops.edit(m, targets[:1], i_starts=[34])
    with pytest.raises(UserError, match="timestep 300 is outside"):
        ops.denoise(m, targets[:1], 300)


def test_denoise_three_ways_and_the_strip(targets):
    m = oracle_model(targets)
    res = ops.denoise(m, targets[:1], 150, condition=0, seed=1)
    torch.testing.assert_close(res["one_step"], targets[:1], atol=1e-4, rtol=0)
    torch.testing.assert_close(res["iterative"], targets[:1], atol=1e-4, rtol=0)
    assert res["timesteps"][0] == 150 and all(res["timesteps"][1:] < 150)
    assert res["strip"].shape[1:] == (1, 1, SIZE, SIZE) and res["strip"].shape[0] >= 3
    assert (res["blur"] - targets[:1]).abs().mean() > 0.01


def test_noise_is_the_forward_process(targets):
    m = oracle_model(targets)
    (x_t,) = ops.noise(m, targets[:1], [100], seed=5)
    g = torch.Generator().manual_seed(5)
    eps = torch.randn((1, 1, SIZE, SIZE), generator=g)
    expected = forward_process(targets[:1], torch.tensor([100]), m.schedule, eps).clamp(0, 1)
    torch.testing.assert_close(x_t, expected)


@pytest.mark.parametrize("learned", [False, True])
def test_inpaint_keeps_every_pixel_outside_the_mask(targets, learned):
    m = oracle_model(targets, learned)
    x0 = torch.rand((1, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(9))
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., :3, 2:6] = 1
    out = ops.inpaint(m, x0, mask, condition=2, seed=0)
    assert torch.equal(out[mask.expand_as(out) == 0], x0[mask.expand_as(x0) == 0])
    assert not torch.equal(out, x0)


def test_repaint_projection_at_the_clean_image_is_the_original(targets):
    s = linear_schedule(300)
    x_orig, mask = targets[:1], (torch.rand(1, 1, SIZE, SIZE) > 0.5).float()
    project = edits.repaint_projection(x_orig, mask, s, torch.Generator().manual_seed(0))
    x = torch.full_like(x_orig, 7.0)
    out = project(x, -1)
    assert torch.equal(out, torch.where(mask == 1, x, x_orig))


def test_anagram_with_two_oracles_satisfies_both_views(targets):
    """With flip, the sample must read as target a upright and as flip(target b) ... averaged: an oracle pair
    whose targets are flips of each other makes a consistent anagram."""
    a = targets[0]
    both = torch.stack([a, a.flip(-2)])
    m = oracle_model(both)
    x = ops.anagram(m, [0, 1], ["identity", "flip"], n=2, seed=0)
    torch.testing.assert_close(x, a.expand(2, -1, -1, -1), atol=1e-3, rtol=0)


def test_anagram_and_hybrid_argument_errors(targets):
    m = oracle_model(targets)
    with pytest.raises(UserError, match="one prompt per view"):
        ops.anagram(m, [0, 1], ["identity", "flip", "rotate_90"])
    with pytest.raises(UserError, match="unknown view 'spin'"):
        ops.anagram(m, [0, 1], ["identity", "spin"])
    with pytest.raises(UserError, match="sigma"):
        ops.hybrid(m, [0, 1, 2], sigmas=[2.0, 1.0, 0.5])
    with pytest.raises(UserError, match="sigma"):
        ops.hybrid(m, [0, 1], sigmas=[2.0, 1.0])
    # one sigma for a three-way hybrid: the middle band's edge is half of it
    assert ops.hybrid_sigmas(m, 3, [2.0]) == [2.0, 1.0]
    assert ops.hybrid_sigmas(m, 2, None) == [1.75] and ops.hybrid_sigmas(m, 3, None) == [1.75, 0.875]


def test_hybrid_of_one_class_is_that_class(targets):
    m = oracle_model(targets)
    x = ops.hybrid(m, [1, 1], n=1, kernel=5, sigmas=[1.0])
    torch.testing.assert_close(x, targets[1:2], atol=1e-3, rtol=0)


def test_guided_is_cfg_and_conditions_are_checked(targets):
    m = oracle_model(targets)
    x, k = torch.rand(1, 1, SIZE, SIZE), torch.tensor([100])
    e_c, e_u = m.denoiser(1)(x, k).eps, m.denoiser(None)(x, k).eps
    torch.testing.assert_close(ops.guided(m, 1, ops.settings(m, guidance=3.0))(x, k).eps, e_u + 3.0 * (e_c - e_u))
    torch.testing.assert_close(ops.guided(m, 1, ops.settings(m, guidance=0.0))(x, k).eps, e_u)
    torch.testing.assert_close(ops.guided(m, 1, ops.settings(m, guidance=1.0))(x, k).eps, e_c)
    assert m.check_condition("2") == 2
    for bad, msg in ((3, "outside 0-2"), ("a rocket ship", "class-conditioned"), (-1, "outside")):
        with pytest.raises(UserError, match=msg):
            m.check_condition(bad)
    with pytest.raises(UserError, match="guidance"):
        ops.guided(m, 1, ops.settings(m, guidance=-1.0))


def test_images_of_the_wrong_shape_are_refused(targets):
    with pytest.raises(UserError, match="do not fit"):
        ops.edit(oracle_model(targets), torch.rand(1, 3, SIZE, SIZE), i_starts=[5])


def test_anagram_takes_a_custom_view_object(targets):
    """Views may be View objects as well as names: a left-right mirror written here (not in the registry),
    with an oracle pair whose targets are mirrors of each other, gives the consistent anagram."""

    class Mirror:
        name = "mirror"

        def __init__(self) -> None:
            self.calls = 0

        def view(self, x):
            self.calls += 1
            return x.flip(-1)

        def inverse_view(self, x):
            return x.flip(-1)

    a = targets[0]
    m = oracle_model(torch.stack([a, a.flip(-1)]))
    mirror = Mirror()
    x = ops.anagram(m, [0, 1], ["identity", mirror], n=2, seed=0)
    torch.testing.assert_close(x, a.expand(2, -1, -1, -1), atol=1e-3, rtol=0)
    assert mirror.calls == len(ops.timesteps(m, ops.settings(m)))  # one call per step
    assert not torch.allclose(a, a.flip(-1))


def test_repr_is_one_short_line(targets):
    r = repr(oracle_model(targets))
    assert "\n" not in r and len(r) <= 120, r
    assert r.startswith("DiffusionModel(") and "oracle" in r and "tensor" not in r


def test_default_guidance_is_the_cards(targets):
    m = oracle_model(targets)
    assert m.default_guidance == m.sampling.guidance == 1.0
    with pytest.raises(AttributeError):
        m.default_guidance = 3.0


def test_strip_keeps_every_nth_step_but_not_the_last():
    strip = ops.Strip(10, 3)
    for i in range(10):
        strip({"i": i, "x": torch.full((1,), float(i))})
    assert [f.item() for f in strip.frames] == [2.0, 5.0, 8.0]  # after steps 3, 6, 9 of 10
    last = ops.Strip(9, 3)
    for i in range(9):
        last({"i": i, "x": torch.full((1,), float(i))})
    assert [f.item() for f in last.frames] == [2.0, 5.0]  # step 9 of 9 is the result, shown separately
