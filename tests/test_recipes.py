"""train/recipes.py: the spec's recipes exactly, fundiff's defaults, overrides and validation."""

from __future__ import annotations

import pytest

from fundiff.errors import UserError
from fundiff.train.recipes import Recipe, make_recipe


@pytest.mark.parametrize("model", ["time", "class"])
def test_spec_ddpm_recipe(model):
    r = make_recipe(model, "ddpm", "spec")
    assert (r.model, r.objective, r.recipe) == (model, "ddpm", "spec")
    assert r.batch_size == 128
    assert r.epochs == 20
    assert r.width == 64
    assert r.lr == 1e-3
    assert r.lr_schedule == "exponential"
    assert r.lr_gamma == pytest.approx(0.1 ** (1 / 20))
    assert r.T == 300 and r.beta_start == 1e-4 and r.beta_end == 0.02
    assert r.p_uncond == 0.1
    assert r.guidance == 5.0
    assert r.ema_decay == 0.0
    assert r.sample_epochs == (5, 20)


def test_spec_denoiser_recipe():
    r = make_recipe("denoiser", "ddpm", "spec")
    assert (r.batch_size, r.epochs, r.width, r.lr, r.sigma) == (256, 5, 128, 1e-4, 0.5)
    assert r.lr_schedule == "constant"  # the spec gives the denoiser no scheduler
    assert r.ema_decay == 0.0 and not r.pure_noise
    assert r.sample_epochs == (1, 5)


@pytest.mark.parametrize("model", ["time", "class"])
def test_spec_flow_recipe(model):
    r = make_recipe(model, "flow", "spec")
    assert (r.batch_size, r.width, r.lr, r.epochs) == (64, 64, 1e-2, 10)
    assert r.sample_epochs == (1, 5, 10)
    assert r.lr_schedule == "exponential" and r.lr_gamma == pytest.approx(0.1 ** (1 / 10))
    assert r.p_uncond == 0.1 and r.guidance == 5.0


@pytest.mark.parametrize(("model", "objective"), [("time", "ddpm"), ("class", "ddpm"), ("time", "flow"),
                                                  ("class", "flow")])
def test_default_recipe_trains_9_epochs_with_a_cosine_lr(model, objective):
    """The README's "Time to quality": batch 16 for 9 epochs, the lr a cosine from 1e-3 to 1e-5 (per epoch)."""
    import torch

    from fundiff.train.loop import make_scheduler

    r = make_recipe(model, objective)
    assert (r.batch_size, r.epochs, r.lr, r.lr_schedule, r.sample_epochs) == (16, 9, 1e-3, "cosine", (1, 5, 9))
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=r.lr)
    sched, lrs = make_scheduler(opt, r), []
    for _ in range(r.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-3) and lrs == sorted(lrs, reverse=True)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert make_recipe(model, objective, epochs=4).sample_epochs == (1, 4)


@pytest.mark.parametrize(("model", "objective"), [("denoiser", "ddpm"), ("time", "ddpm"), ("class", "ddpm"),
                                                  ("time", "flow"), ("class", "flow")])
def test_default_recipe_keeps_the_spec_model(model, objective):
    """fundiff's improved recipe changes training/sampling details, never the model or its maths."""
    spec, default = make_recipe(model, objective, "spec"), make_recipe(model, objective)
    assert default.recipe == "default"
    for k in ("model", "objective", "width", "T", "beta_start", "beta_end", "sigma", "p_uncond", "pure_noise"):
        assert getattr(default, k) == getattr(spec, k), k
    assert default.precision == "bf16" and spec.precision == "fp32"
    assert spec.guidance_interval == (0.0, 1.0), "the spec's CFG applies at every step"
    if objective == "ddpm" and model != "denoiser":
        assert default.clip_x0 and default.guidance_interval == (0.5, 0.9)


def test_guidance_interval_round_trips_and_is_checked():
    r = make_recipe("class", guidance_interval=(0.3, 0.9))
    assert Recipe.from_dict(r.to_dict()) == r
    for bad in ((0.5, 0.5), (-0.1, 1.0), (0.2, 1.1)):
        with pytest.raises(UserError, match="guidance-interval"):
            make_recipe("class", guidance_interval=bad)


def test_overrides():
    r = make_recipe("class", "ddpm", "spec", lr=3e-3, epochs=15, lr_schedule="constant", width=None, seed=7)
    assert (r.lr, r.epochs, r.lr_schedule, r.width, r.seed) == (3e-3, 15, "constant", 64, 7)  # None keeps
    assert r.lr_gamma == pytest.approx(0.1 ** (1 / 15))
    # fewer epochs keep the sample epochs that still exist, and always the last one
    assert r.sample_epochs == (5, 15)
    assert make_recipe("class", epochs=3).sample_epochs == (1, 3)
    assert make_recipe("time", "flow", "spec", epochs=6).sample_epochs == (1, 5, 6)
    assert make_recipe("class", epochs=3, sample_epochs=(1, 2)).sample_epochs == (1, 2)


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(epochs=-1), dict(width=-3), dict(width=0), dict(batch_size=1),
                                dict(lr=0.0), dict(p_uncond=1.0), dict(ema_decay=1.0), dict(sigma=-0.1),
                                dict(lr_schedule="step"), dict(precision="fp8"), dict(beta_start=0.5),
                                dict(augment=1.5), dict(augment=-0.1), dict(loss_weighting="snr"),
                                dict(time_sampling="beta")])
def test_out_of_range_overrides_are_user_errors(kw):
    with pytest.raises(UserError):
        make_recipe("class", **kw)


def test_unknown_names_are_user_errors():
    with pytest.raises(UserError, match="objective"):
        make_recipe("class", "score")
    with pytest.raises(UserError, match="model"):
        make_recipe("unet")
    with pytest.raises(UserError, match="recipe"):
        make_recipe("class", "ddpm", "fast")


def test_dict_roundtrip_ignores_unknown_keys():
    r = make_recipe("time", "flow", "spec", seed=3)
    d = r.to_dict()
    assert d["sample_epochs"] == [1, 5, 10]
    assert Recipe.from_dict({**d, "from_the_future": 1}) == r


def test_levers_belong_to_their_objective():
    """min-SNR weights the DDPM noise loss; logit-normal times are flow matching's: each refused on the other."""
    assert make_recipe("class", loss_weighting="min-snr").loss_weighting == "min-snr"
    assert make_recipe("class", "flow", time_sampling="logit-normal").time_sampling == "logit-normal"
    with pytest.raises(UserError, match="flow models take --time-sampling"):
        make_recipe("class", "flow", loss_weighting="min-snr")
    with pytest.raises(UserError, match="DDPM models take --loss-weighting"):
        make_recipe("class", time_sampling="logit-normal")


def test_the_recipe_names_its_cards_sampler():
    """A recipe's card samples with its sampler; runs recorded before the field existed keep the full loop."""
    from fundiff.models.fundiff_unet import recipe_sampling

    spec = make_recipe("class", recipe="spec")
    assert spec.sampler == "full" and recipe_sampling(spec).sampler == "ddpm" and recipe_sampling(spec).stride == 1
    solver = make_recipe("class", sampler="dpmpp-2m", solver_steps=15)
    s = recipe_sampling(solver)
    assert (s.sampler, s.steps, s.guidance, s.guidance_interval) == ("dpmpp-2m", 15, 5.0, solver.guidance_interval)
    old = {k: v for k, v in solver.to_dict().items() if k not in ("sampler", "solver_steps")}
    assert Recipe.from_dict(old).sampler == "full"
    with pytest.raises(UserError, match="solver-steps"):
        make_recipe("class", sampler="dpmpp-2m", solver_steps=1)
    with pytest.raises(UserError, match="sampler"):
        make_recipe("class", sampler="heun")


def test_flow_guidance_interval_is_the_ddpm_interval_by_signal_to_noise_ratio():
    """The default flow recipe guides where the DDPM default guides, measured by SNR: abar / (1 - abar) at the
    DDPM interval's ends equals t^2 / (1 - t)^2 at the flow interval's (noise level 1 - t), to 0.01 in level."""
    import math

    from fundiff.core.schedule import linear_schedule

    ddpm, flow = make_recipe("class"), make_recipe("class", "flow")
    s = linear_schedule(ddpm.T, ddpm.beta_start, ddpm.beta_end)
    for end, level in zip(ddpm.guidance_interval, flow.guidance_interval):
        abar = float(s.abar(round(end * s.T) - 1))  # t/T = (k + 1) / T
        root = math.sqrt(abar / (1 - abar))
        assert 1 - root / (1 + root) == pytest.approx(level, abs=0.01)
