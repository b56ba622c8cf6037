"""generate() samples a large batch in slices of :func:`parta.chunk_size` images, in lockstep: each slice computes
what it would alone (deterministic samplers give the unsliced result), the callback sees the whole batch, and a
batch that fits in one slice draws what it always drew."""

from __future__ import annotations

import pytest
import torch

from fundiff import parta
from fundiff.core.loop import make_step, run_loop
from fundiff.core.sampling import Sampling
from fundiff.models import load


@pytest.fixture(scope="module")
def model(class_run):
    return load(class_run, "cpu", precision="fp32")


def sliced(monkeypatch, images: int) -> None:
    monkeypatch.setattr(parta, "CPU_CHUNK_PIXELS", images * 28 * 28)


def test_chunk_size_on_cpu_is_64_digits(model):
    assert parta.chunk_size(model) == 64


@pytest.mark.parametrize("sampler", [Sampling(sampler="ddim", steps=8), Sampling(sampler="dpmpp-2m", steps=8)])
def test_deterministic_samplers_give_the_unsliced_result(model, monkeypatch, sampler):
    """DDIM (eta 0) and DPM-Solver++(2M) are functions of x_T: slicing may only change float rounding. The
    multistep solver keeps its memory per slice (a shared one would mix slices' x0 estimates)."""
    labels = [c % 10 for c in range(7)]
    whole = parta.generate(model, labels, 7, seed=3, sampling=sampler)
    sliced(monkeypatch, 3)
    assert parta.chunk_size(model) == 3
    frames = []
    parts = parta.generate(model, labels, 7, seed=3, sampling=sampler, callback=lambda d: frames.append(d["x"]))
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=0)
    assert len(frames) == 8 and all(f.shape[0] == 7 for f in frames), "the callback sees the whole batch"


def test_one_slice_draws_what_the_plain_loop_draws(model):
    """A batch within one slice: generate() is the one loop on x_T ~ N(0, I) from the seed's generator, continued
    for the step noise (the bytes every earlier version gave)."""
    s = parta.settings(model, Sampling(sampler="ddpm", steps=10))
    g = torch.Generator().manual_seed(5)
    x = torch.randn((4, 1, 28, 28), generator=g)
    fn = parta.guided(model, [1, 2, 3, 4], s)
    expected = run_loop(fn, x, model.schedule.levels(s.timesteps(model.schedule.T)),
                        make_step(model.schedule, s, model.value_range), g)
    got = parta.generate(model, [1, 2, 3, 4], 4, seed=5, sampling=s)
    assert torch.equal(got, model.to_unit_range(expected).clamp(0, 1))


def test_sliced_ddpm_is_seeded_and_slices_differ(model, monkeypatch):
    sliced(monkeypatch, 2)
    s = Sampling(sampler="ddpm", steps=10)
    a = parta.generate(model, 0, 6, seed=1, sampling=s)
    assert torch.equal(a, parta.generate(model, 0, 6, seed=1, sampling=s))
    assert not torch.equal(a[:2], a[2:4]) and not torch.equal(a[2:4], a[4:6])
