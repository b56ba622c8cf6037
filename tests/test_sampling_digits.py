"""sampling/digits.py: generating from tiny trained runs (DDPM, DDIM, flow/Euler, CFG)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from fundiff.errors import UserError
from fundiff.sampling.digits import class_grid_labels, generate, recipe_schedule
from fundiff.train.checkpoint import load_model


@pytest.fixture(scope="module")
def class_model(class_run):
    net, recipe, _ = load_model(class_run)
    return net, recipe


def test_class_grid_labels():
    assert class_grid_labels([3, 5], 2).tolist() == [3, 5, 3, 5]
    assert class_grid_labels(list(range(10)), 4).tolist() == list(range(10)) * 4


def test_generate_same_seed_same_samples_full_ddpm(class_model):
    net, recipe = class_model
    labels = torch.tensor([0, 7])
    a = generate(net, recipe, 2, labels, 5.0, "ddpm", seed=3)  # all T = 300 steps
    b = generate(net, recipe, 2, labels, 5.0, "ddpm", seed=3)
    assert a.shape == (2, 1, 28, 28) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, generate(net, recipe, 2, labels, 5.0, "ddpm", steps=300, seed=4))


def test_generate_ddim_with_few_steps(class_model):
    net, recipe = class_model
    ks = []
    x = generate(net, recipe, 3, torch.tensor([1, 2, 3]), 5.0, "ddim", steps=5, seed=0,
                 callback=lambda d: ks.append(d["k"]))
    assert x.shape == (3, 1, 28, 28) and torch.isfinite(x).all()
    assert ks == [299, 224, 150, 75, 0]
    y = generate(net, recipe, 3, torch.tensor([1, 2, 3]), 5.0, "ddim", steps=5, seed=0)
    assert torch.equal(x, y)


def test_clip_keeps_samples_in_the_data_range(class_model):
    net, recipe = class_model
    labels = torch.arange(4)
    for sampler in ("ddpm", "ddim"):
        x = generate(net, recipe, 4, labels, 5.0, sampler, steps=10, seed=0, clip=True)
        assert x.min() >= 0 and x.max() <= 1
    unclipped = generate(net, recipe, 4, labels, 5.0, "ddim", steps=10, seed=0, clip=False)
    assert not torch.equal(unclipped, generate(net, recipe, 4, labels, 5.0, "ddim", steps=10, seed=0, clip=True))


def test_guidance_zero_is_the_unconditional_model(class_model):
    """With the spec's CFG at every step (interval 0-1), gamma 0 is eps_u throughout."""
    net, recipe = class_model
    recipe = replace(recipe, guidance_interval=(0.0, 1.0))
    labels = torch.tensor([4, 9])
    uncond = generate(net, recipe, 2, None, 5.0, "ddim", steps=8, seed=1)
    torch.testing.assert_close(generate(net, recipe, 2, labels, 0.0, "ddim", steps=8, seed=1), uncond)
    assert not torch.allclose(generate(net, recipe, 2, labels, 5.0, "ddim", steps=8, seed=1), uncond)


def test_guidance_outside_its_interval_has_no_effect(class_model):
    """With CFG only at t/T in [0.5, 0.9], a step outside it (one DDIM step at t/T = 1) ignores gamma."""
    net, recipe = class_model
    recipe = replace(recipe, guidance_interval=(0.5, 0.9))
    labels = torch.tensor([4, 9])
    low = [generate(net, recipe, 2, labels, g, "ddim", steps=1, seed=1) for g in (0.0, 5.0)]
    assert torch.equal(*low), "one DDIM step at k = 299 is t/T = 1.0, outside [0.5, 0.9]"
    full = replace(recipe, guidance_interval=(0.0, 1.0))
    assert not torch.equal(*(generate(net, full, 2, labels, g, "ddim", steps=1, seed=1) for g in (0.0, 5.0)))


def test_flow_model_samples_with_euler(flow_run):
    net, recipe, _ = load_model(flow_run)
    assert recipe.objective == "flow" and recipe_schedule(recipe) is None
    assert net.config.time_injection == "mul"
    steps = []
    x = generate(net, recipe, 3, None, sampler="ddpm", steps=20, seed=2, callback=lambda d: steps.append(d["i"]))
    assert x.shape == (3, 1, 28, 28) and torch.isfinite(x).all()
    assert steps == list(range(20))
    assert torch.equal(x, generate(net, recipe, 3, None, steps=20, seed=2))
    full = []
    generate(net, recipe, 1, None, seed=2, callback=lambda d: full.append(d["i"]))
    assert len(full) == recipe.T  # Euler with T = 300 steps by default


def test_generate_errors(class_model, denoiser_run):
    net, recipe = class_model
    with pytest.raises(UserError, match="sampler"):
        generate(net, recipe, 1, torch.tensor([0]), sampler="euler")
    dnet, drecipe, _ = load_model(denoiser_run)
    with pytest.raises(UserError, match="cannot sample"):
        generate(dnet, drecipe, 1)
