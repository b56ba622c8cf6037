"""Classifier guidance (Dhariwal and Nichol 2021): eps' = eps - s sqrt(1 - abar_t) grad log p_phi(y | x_t, t), the
noise-aware classifier a model carries, its training command, and what it does to the digit model's illusions."""

from __future__ import annotations

import json
import shutil
from itertools import permutations

import pytest
import torch
from helpers import CPU, assert_one_line_error, fundiff_in_process, run_cli

from fundiff import parta as ops
from fundiff.core.contract import Prediction
from fundiff.core.guidance import classifier_guidance, log_prob_gradient
from fundiff.core.sampling import Sampling
from fundiff.errors import UserError
from fundiff.evaluate.judge import predict
from fundiff.evaluate.runs import judge_for
from fundiff.models import load_diffusion_model, shipped_path
from fundiff.models.guide import CLASSIFIER_FILE, CLASSIFIER_SCALE
from fundiff.nets.classifier import NoisyClassifier, load_noisy_classifier
from fundiff.train.data import load_digits


def _linear_classifier(w: torch.Tensor):
    return lambda x, level: x.flatten(1) @ w.T


def test_the_gradient_is_the_softmax_formula():
    """grad_x log softmax(W x)_y = W_y - sum_k p_k W_k, for each image and its own label."""
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(3, 4, generator=g), torch.randn(5, 1, 2, 2, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1])
    p = torch.softmax(x.flatten(1) @ w.T, 1)
    want = (w[labels] - p @ w).view_as(x)
    got = log_prob_gradient(_linear_classifier(w), labels)(x, torch.zeros(5))
    assert torch.allclose(got, want, atol=1e-6)
    one = log_prob_gradient(_linear_classifier(w), torch.tensor([2]))(x, torch.zeros(5))  # one label for all
    assert torch.allclose(one, (w[2] - p @ w).view_as(x), atol=1e-6)


def test_guidance_shifts_eps_by_the_scaled_gradient_and_scale_zero_is_the_plain_denoiser():
    g = torch.Generator().manual_seed(1)
    w, x = torch.randn(3, 4, generator=g), torch.randn(2, 1, 2, 2, generator=g)
    eps = torch.randn_like(x)

    def denoiser(x_t, level):
        return Prediction(eps)

    abar = lambda level: torch.full((len(level),), 0.36)  # noqa: E731 - sqrt(1 - abar) = 0.8
    grad = log_prob_gradient(_linear_classifier(w), torch.tensor([1, 2]))
    out = classifier_guidance(denoiser, grad, 3.0, abar)(x, torch.zeros(2)).value
    assert torch.allclose(out, eps - 3.0 * 0.8 * grad(x, torch.zeros(2)), atol=1e-6)
    assert classifier_guidance(denoiser, grad, 0.0, abar) is denoiser


def test_a_guided_step_raises_the_classifiers_belief_in_the_asked_class():
    """x0_hat = (x_t - sqrt(1 - abar) eps') / sqrt(abar) moves along +grad log p: for a small s, log p rises."""
    g = torch.Generator().manual_seed(2)
    w, x = torch.randn(10, 16, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    labels = torch.arange(8) % 10
    clf, zero = _linear_classifier(w), torch.zeros(8)
    eps = torch.randn_like(x)
    a = torch.tensor(0.5)

    def logp(img):
        return torch.log_softmax(clf(img, zero), 1).gather(1, labels[:, None])

    guided = classifier_guidance(lambda x_t, k: Prediction(eps), log_prob_gradient(clf, labels), 0.05,
                                 lambda level: a.expand(len(level)))(x, zero).value
    before, after = ((x - (1 - a).sqrt() * e) / a.sqrt() for e in (eps, guided))
    assert (logp(after) > logp(before)).all()


def test_the_shipped_models_carry_their_classifier_and_use_it_for_illusions_only():
    for name in ("digits", "fashion"):
        model = load_diffusion_model(name, CPU)
        assert model.classifier is not None and model.illusions().classifier_scale == CLASSIFIER_SCALE
        assert not model.sampling.classifier_scale  # plain samples and edits: no classifier guidance
        assert model.describe()["classifier"]["file"] == f"{name}-{CLASSIFIER_FILE}"  # runs record which one
        logits = model.classifier(torch.zeros(2, 1, 28, 28), torch.tensor([10, 200]))
        assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_the_shipped_classifier_reads_lightly_noised_held_out_digits():
    from fundiff.train.classifier import noisy_accuracy
    from fundiff.train.data import split_holdout

    model = load_diffusion_model("digits", CPU)
    net, info = load_noisy_classifier(shipped_path("digits").with_name(f"digits-{CLASSIFIER_FILE}"))
    held = split_holdout(load_digits("mnist"))[1]
    assert noisy_accuracy(net, model, held, 0.1) >= 0.95
    assert info["T"] == model.schedule.T and info["data"] == load_digits("mnist").source


def test_classifier_guidance_lifts_the_anagrams_both_readings():
    """The first 20 of the 90 ordered digit pairs, flip, seed 0: read both ways more often with the classifier."""
    model = load_diffusion_model("digits", CPU)
    judge = judge_for("mnist", load_digits("mnist").source, None)[0]
    pairs = list(permutations(range(10), 2))[::4][:20]
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    rates = []
    for scale in (0.0, CLASSIFIER_SCALE):
        out = ops.anagram(model, [a, b], ["identity", "flip"], len(a), sampling=Sampling(classifier_scale=scale))
        hits = (predict(judge, out) == torch.tensor(a)) & (predict(judge, out.flip(-2)) == torch.tensor(b))
        rates.append(float(hits.float().mean()))
    assert rates[1] >= rates[0] + 0.1, rates


def test_train_classifier_writes_a_run_classifier_that_loading_attaches(tmp_path, class_run, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(class_run, run)
    assert load_diffusion_model(run, CPU).classifier is None
    code, out, err = fundiff_in_process(monkeypatch, capsys, "train-classifier", run, "--epochs", "1")
    assert code == 0, err
    net, info = load_noisy_classifier(run / CLASSIFIER_FILE)
    assert isinstance(net, NoisyClassifier) and info["epochs"] == 1 and set(info["held_out_accuracy_at_t"]) == {
        "0.1", "0.5", "0.9"}
    model = load_diffusion_model(run, CPU)
    assert model.classifier is not None and model.illusions().classifier_scale == CLASSIFIER_SCALE
    first = ops.anagram(model, [3, 7], ["identity", "flip"], 1, sampling=Sampling(steps=3))
    assert torch.equal(first, ops.anagram(model, [3, 7], ["identity", "flip"], 1, sampling=Sampling(steps=3)))
    again = fundiff_in_process(monkeypatch, capsys, "train-classifier", run, "--epochs", "1")
    assert again[0] != 0 and "exists; pass --force" in again[2]
    code, _, err = fundiff_in_process(monkeypatch, capsys, "anagram", "--model", run, "--prompt", "3", "--prompt",
                                      "7", "--n", "1", "--steps", "2", "--out", tmp_path / "a")
    assert code == 0, err
    assert json.loads((tmp_path / "a" / "args.json").read_text())["sampling"]["classifier_scale"] == CLASSIFIER_SCALE


def test_a_classifier_of_another_process_is_refused(tmp_path, class_run, flow_run):
    from dataclasses import replace

    from fundiff.core.schedule import linear_schedule
    from fundiff.models.guide import with_classifier

    shipped = shipped_path("digits").with_name(f"digits-{CLASSIFIER_FILE}")
    model = load_diffusion_model(class_run, CPU)
    assert with_classifier(model, shipped).classifier is not None  # the same T = 300 and betas: accepted
    other = replace(model, schedule=linear_schedule(100, 1e-4, 0.02))
    with pytest.raises(UserError, match="trained for another model"):
        with_classifier(other, shipped)
    with pytest.raises(UserError, match="class-conditioned DDPM"):
        with_classifier(load_diffusion_model(flow_run, CPU), shipped)


def test_bad_classifier_options_are_one_line(tmp_path, class_run):
    assert_one_line_error(run_cli("anagram", "--model", class_run, "--prompt", "3", "--prompt", "7", "--out",
                                  tmp_path / "a", "--classifier-scale", "5"), "no noise-aware classifier",
                          "train-classifier")
    assert_one_line_error(run_cli("anagram", "--prompt", "3", "--prompt", "7", "--out", tmp_path / "b",
                                  "--classifier-scale", "-1"), "--classifier-scale")
    assert_one_line_error(run_cli("train-classifier", "digits"), "--out")
    assert_one_line_error(run_cli("train-classifier", "digits", "--out", tmp_path / "c", "--epochs", "0"),
                          "--epochs")
    assert not any(tmp_path.iterdir())
