"""Generating from tiny trained digit runs through the one generation path (fundiff_model + parta.generate):
DDPM, DDIM, flow/Euler, CFG and its interval."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from fundiff import parta
from fundiff.core.sampling import Sampling
from fundiff.core.schedule import FlowPath, Schedule
from fundiff.errors import UserError
from fundiff.models.fundiff_unet import fundiff_model, recipe_process
from fundiff.partb.samples import class_grid_labels
from fundiff.train.checkpoint import load_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def class_model(class_run):
    net, recipe, _ = load_model(class_run)
    return fundiff_model(net, recipe, "tiny-class", CPU)


def test_class_grid_labels():
    assert class_grid_labels([3, 5], 2).tolist() == [3, 5, 3, 5]
    assert class_grid_labels(list(range(10)), 4).tolist() == list(range(10)) * 4


def test_card_defaults_of_a_ddpm_class_run(class_run):
    """The default recipe's card: DPM-Solver++(2M) on its solver_steps; a "full" card: DDPM over all T steps with
    the beta variance. Both clip as the recipe says and guide at the recipe's gamma and interval."""
    net, recipe, _ = load_model(class_run)
    few = fundiff_model(net, recipe, "tiny-class", CPU)
    full = fundiff_model(net, replace(recipe, sampler="full"), "tiny-class", CPU)
    assert isinstance(full.schedule, Schedule) and full.schedule.T == recipe.T == 300
    assert (few.sampling.sampler, few.sampling.steps) == ("dpmpp-2m", recipe.solver_steps)
    assert (full.sampling.sampler, full.sampling.stride, full.sampling.steps, full.sampling.variance) == \
        ("ddpm", 1, None, "beta")
    for s in (few.sampling, full.sampling):
        assert s.clip == recipe.clip_x0 and s.guidance == recipe.guidance
        assert s.guidance_interval == tuple(recipe.guidance_interval)
    assert full.sampling.timesteps(300) == list(range(299, -1, -1))


def test_generate_same_seed_same_samples_full_ddpm(class_model):
    ks = []
    ddpm = Sampling(sampler="ddpm", stride=1)
    a = parta.generate(class_model, [0, 7], 2, guidance=5.0, seed=3, sampling=ddpm,
                       callback=lambda d: ks.append(d["k"]))
    assert ks == list(range(299, -1, -1))  # all T = 300 steps
    b = parta.generate(class_model, [0, 7], 2, guidance=5.0, seed=3, sampling=ddpm)
    assert a.shape == (2, 1, 28, 28) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, parta.generate(class_model, [0, 7], 2, guidance=5.0, seed=4,
                                             sampling=Sampling(sampler="ddpm", steps=300)))


def test_generate_ddim_with_few_steps(class_model):
    ks = []
    s = Sampling(sampler="ddim", steps=5)
    x = parta.generate(class_model, [1, 2, 3], 3, guidance=5.0, seed=0, sampling=s,
                       callback=lambda d: ks.append(d["k"]))
    assert x.shape == (3, 1, 28, 28) and torch.isfinite(x).all()
    assert ks == [299, 224, 150, 75, 0]
    y = parta.generate(class_model, [1, 2, 3], 3, guidance=5.0, seed=0, sampling=s)
    assert torch.equal(x, y)


def test_clip_keeps_samples_in_the_data_range(class_model):
    """x0_hat clamped to [0, 1] keeps every sample in range before the final clamp to [0, 1] (checked on the
    last step's x); without clip the samples differ."""
    labels = [0, 1, 2, 3]
    for sampler in ("ddpm", "ddim"):
        last: list[dict] = []
        parta.generate(class_model, labels, 4, guidance=5.0, seed=0,
                       sampling=Sampling(sampler=sampler, steps=10, clip=True), callback=last.append)
        x = last[-1]["x"]
        assert x.min() >= 0 and x.max() <= 1
    unclipped = parta.generate(class_model, labels, 4, guidance=5.0, seed=0,
                               sampling=Sampling(sampler="ddim", steps=10, clip=False))
    clipped = parta.generate(class_model, labels, 4, guidance=5.0, seed=0,
                             sampling=Sampling(sampler="ddim", steps=10, clip=True))
    assert not torch.equal(unclipped, clipped)


def test_guidance_zero_is_the_unconditional_model(class_model):
    """With the spec's CFG at every step (interval 0-1), gamma 0 is eps_u throughout."""
    s = Sampling(sampler="ddim", steps=8, guidance_interval=(0.0, 1.0))
    uncond = parta.generate(class_model, None, 2, guidance=5.0, seed=1, sampling=s)
    torch.testing.assert_close(parta.generate(class_model, [4, 9], 2, guidance=0.0, seed=1, sampling=s), uncond)
    assert not torch.allclose(parta.generate(class_model, [4, 9], 2, guidance=5.0, seed=1, sampling=s), uncond)


def test_guidance_outside_its_interval_has_no_effect(class_model):
    """With CFG only at t/T in [0.5, 0.9], a step outside it (one DDIM step at t/T = 1) ignores gamma."""
    s = Sampling(sampler="ddim", steps=1, guidance_interval=(0.5, 0.9))
    low = [parta.generate(class_model, [4, 9], 2, guidance=g, seed=1, sampling=s) for g in (0.0, 5.0)]
    assert torch.equal(*low), "one DDIM step at k = 299 is t/T = 1.0, outside [0.5, 0.9]"
    full = Sampling(sampler="ddim", steps=1, guidance_interval=(0.0, 1.0))
    assert not torch.equal(*(parta.generate(class_model, [4, 9], 2, guidance=g, seed=1, sampling=full)
                             for g in (0.0, 5.0)))


def test_flow_model_samples_with_euler(flow_run):
    net, recipe, _ = load_model(flow_run)
    assert recipe.objective == "flow" and recipe_process(recipe) == FlowPath(recipe.T)
    assert net.config.time_injection == "mul"
    model = fundiff_model(net, recipe, "tiny-flow", CPU)
    assert model.is_flow and model.sampling.sampler == "dpmpp-2m"  # the default recipe's card
    full_card = fundiff_model(net, replace(recipe, sampler="full"), "tiny-flow", CPU)
    assert full_card.sampling.sampler == "euler"
    steps = []
    euler = Sampling(sampler="euler", steps=20)
    x = parta.generate(model, None, 3, seed=2, sampling=euler, callback=lambda d: steps.append(d["i"]))
    assert x.shape == (3, 1, 28, 28) and torch.isfinite(x).all()
    assert steps == list(range(20))
    assert torch.equal(x, parta.generate(model, None, 3, seed=2, sampling=euler))
    assert not torch.equal(x, parta.generate(model, None, 3, seed=2, sampling=Sampling(steps=20)))
    full = []
    parta.generate(full_card, None, 1, seed=2, callback=lambda d: full.append(d["k"]))
    assert len(full) == recipe.T  # a full card: Euler with T = 300 steps
    # the callback's level is the flow time: the spec's Euler loop at t = i / T
    assert full == pytest.approx([i / recipe.T for i in range(recipe.T)])
    with pytest.raises(UserError, match="euler"):  # a DDPM sampler for a flow model is refused, not ignored
        parta.generate(model, None, 1, sampling=Sampling(sampler="ddpm", steps=20))


def test_generate_errors(class_model, denoiser_run):
    with pytest.raises(UserError, match="sampler"):
        parta.generate(class_model, 0, 1, sampling=Sampling(sampler="euler"))
    with pytest.raises(UserError, match="sampler"):
        Sampling(sampler="magic")
    with pytest.raises(UserError, match="2 images"):
        parta.generate(class_model, [0, 1, 2], 2)
    dnet, drecipe, _ = load_model(denoiser_run)
    with pytest.raises(UserError, match="cannot sample"):
        fundiff_model(dnet, drecipe, "tiny-denoiser", CPU)
