"""The report's stage-time estimates: the quick profile's measured seconds, other profiles scaled by their work."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fundiff.report.build import all_stages
from fundiff.report.estimate import TRAIN_IMAGES_PER_S, calls_per_image, estimates, recipe_of, training_work
from fundiff.report.options import ReportOptions
from fundiff.report.profiles import QUICK, QUICK_SECONDS, SPEC
from fundiff.train.recipes import make_recipe


def stage_names(profile: str) -> list[str]:
    return [s.name for s in all_stages(ReportOptions(profile=profile), {"quick": QUICK, "spec": SPEC}[profile])]


def test_the_quick_profile_is_its_measured_seconds_for_every_stage():
    names = stage_names("quick")
    assert set(names) <= set(QUICK_SECONDS), set(names) - set(QUICK_SECONDS)
    assert estimates(QUICK, names) == {n: QUICK_SECONDS[n] for n in names}


def test_the_spec_profile_does_at_least_the_quick_work_in_every_stage():
    names = stage_names("spec")
    spec, quick = estimates(SPEC, names), estimates(QUICK, names)
    assert all(spec[n] >= quick[n] for n in names)
    assert sum(spec.values()) > 5 * sum(quick.values())


def test_a_training_stage_scales_by_epochs_width_squared_and_measured_rate():
    quick, spec = recipe_of(QUICK.run("class-ddpm")), recipe_of(SPEC.run("class-ddpm"))
    assert (quick.batch_size, quick.precision, spec.batch_size, spec.precision) == (16, "bf16", 128, "fp32")
    seconds = estimates(SPEC, ["train/class-ddpm"])["train/class-ddpm"]
    rate = TRAIN_IMAGES_PER_S[("fp32", "large")] / TRAIN_IMAGES_PER_S[("bf16", "small")]
    assert seconds == pytest.approx(QUICK_SECONDS["train/class-ddpm"] * (spec.epochs / quick.epochs) / rate)
    wide = replace(spec, width=128)
    assert training_work(wide) == pytest.approx(4 * training_work(spec))


def test_net_calls_per_image_count_the_steps_and_the_guided_levels_twice():
    default = make_recipe("class")  # DPM-Solver++(2M)-20, CFG on t/T in [0.5, 0.9]
    assert calls_per_image(default) == pytest.approx(20 * 1.4)
    assert calls_per_image(make_recipe("class", recipe="spec")) == pytest.approx(300 * 2)  # CFG at every level
    assert calls_per_image(make_recipe("time", recipe="spec")) == 300
    assert calls_per_image(default, steps=50) == pytest.approx(50 * 1.4)
