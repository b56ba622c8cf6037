"""Anagrams and hybrids sample with the model's illusion defaults (its card), every other operation with its plain
sampling defaults; a user's setting still wins over both."""

from __future__ import annotations

import json

from helpers import CPU, fundiff_in_process

from fundiff import parta as ops
from fundiff.core.sampling import Sampling
from fundiff.models import load_diffusion_model
from fundiff.models.fundiff_unet import ILLUSION_GUIDANCE, ILLUSION_STEPS


def _model():
    return load_diffusion_model("digits", CPU)


def test_the_digit_card_has_illusion_defaults_beside_its_plain_ones():
    model = _model()
    ill = model.illusions()
    assert ill.steps == ILLUSION_STEPS and ill.stride is None and ill.variance == "posterior"
    assert ill.guidance == ILLUSION_GUIDANCE and ill.guidance_interval == (0.0, 1.0) and ill.clip
    assert model.sampling.sampler == "dpmpp-2m" and model.sampling.steps == 20  # plain samples: DPM-Solver++(2M)
    assert model.describe()["illusion_sampling"]["steps"] == ILLUSION_STEPS


def test_settings_pick_the_illusion_defaults_only_when_asked_and_user_settings_win():
    model = _model()
    assert ops.settings(model) == model.sampling
    assert ops.settings(model, illusion=True) == model.illusions()
    asked = ops.settings(model, Sampling(steps=7), guidance=2.0, illusion=True)
    assert asked.steps == 7 and asked.guidance == 2.0 and asked.variance == "posterior"


def test_a_model_without_illusion_defaults_uses_its_plain_ones():
    from dataclasses import replace

    model = replace(_model(), illusion_sampling=None)
    assert model.illusions() == model.sampling == ops.settings(model, illusion=True)


def test_anagram_and_hybrid_take_the_illusion_steps(monkeypatch):
    """Count what goes through the net: CFG everywhere (a conditional and an unconditional estimate per view) on
    ILLUSION_STEPS steps, each step's estimates in two calls (parta.joint_guided)."""
    model = _model()
    calls = []
    bind = model.bind

    def counting(condition):
        fn = bind(condition)
        return lambda x, k: (calls.append(len(x)), fn(x, k))[1]

    monkeypatch.setattr(model, "bind", counting)
    ops.anagram(model, [6, 9], ["identity", "rotate_180"], 1)
    assert len(calls) == ILLUSION_STEPS * 2 and sum(calls) == ILLUSION_STEPS * 2 * 2
    calls.clear()
    ops.hybrid(model, [0, 1], 1)
    assert len(calls) == ILLUSION_STEPS * 2 and sum(calls) == ILLUSION_STEPS * 2 * 2
    calls.clear()
    ops.generate(model, 3, 1, sampling=Sampling(steps=4))
    assert 4 <= len(calls) <= 8  # plain sampling keeps the card's guidance interval


def test_the_anagram_command_records_the_illusion_settings(tmp_path, monkeypatch, capsys):
    out = tmp_path / "a"
    code, _, err = fundiff_in_process(monkeypatch, capsys, "anagram", "--prompt", "6", "--prompt", "9", "--views",
                                      "rotate_180", "--n", "1", "--out", out)
    assert code == 0, err
    record = json.loads((out / "args.json").read_text())
    assert record["sampling"]["steps"] == ILLUSION_STEPS and record["guidance"] == ILLUSION_GUIDANCE
    again = tmp_path / "b"
    fundiff_in_process(monkeypatch, capsys, "anagram", "--prompt", "6", "--prompt", "9", "--views", "rotate_180",
                       "--n", "1", "--out", again)
    assert (out / "anagram.png").read_bytes() == (again / "anagram.png").read_bytes()


def test_a_per_image_condition_list_of_the_wrong_length_is_one_line():
    import pytest

    from fundiff.errors import UserError

    model = _model()
    with pytest.raises(UserError, match="3 conditions for 2 images"):
        ops.anagram(model, [[1, 2, 3], 4], ["identity", "flip"], 2)
    with pytest.raises(UserError, match="1 conditions for 2 images"):
        ops.hybrid(model, [[1], 4], 2)
