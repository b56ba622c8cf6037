"""core/schedule.py: the linear and cosine schedules, the t = k + 1 convention, timestep lists."""

from __future__ import annotations

import pytest
import torch

from fundiff.core.schedule import (
    Schedule,
    cosine_schedule,
    evenly_spaced_timesteps,
    forward_process,
    linear_schedule,
    strided_timesteps,
)


def test_linear_schedule_endpoints_and_cumprod():
    s = linear_schedule(300)
    assert s.T == 300
    assert s.betas.shape == (300,)
    assert s.betas[0].item() == pytest.approx(1e-4, abs=1e-12)
    assert s.betas[-1].item() == pytest.approx(0.02, abs=1e-12)
    torch.testing.assert_close(s.betas, torch.linspace(1e-4, 0.02, 300, dtype=torch.float64))
    torch.testing.assert_close(s.alphas, 1 - s.betas)
    torch.testing.assert_close(s.alphas_cumprod, torch.cumprod(1 - s.betas, 0))
    assert torch.all(s.alphas_cumprod[1:] < s.alphas_cumprod[:-1])  # strictly decreasing


def test_abar_of_minus_one_is_the_clean_image():
    s = linear_schedule(300)
    assert s.abar(-1).item() == 1.0
    assert s.abar(0).item() == pytest.approx(1 - 1e-4)
    ks = torch.tensor([-1, 0, 5, 299])
    expected = torch.stack([torch.tensor(1.0, dtype=torch.float64), *s.alphas_cumprod[[0, 5, 299]]])
    torch.testing.assert_close(s.abar(ks), expected)


def test_model_time_off_by_one():
    """Index k in 0..T-1 is the spec's t = k + 1 in 1..T; the net sees t / T."""
    s = linear_schedule(300)
    assert s.model_time(0).item() == pytest.approx(1 / 300)
    assert s.model_time(299).item() == pytest.approx(1.0)
    ks = torch.arange(300)
    torch.testing.assert_close(s.model_time(ks), (ks + 1).float() / 300)
    assert s.model_time(ks).min() > 0 and s.model_time(ks).max() <= 1


def test_forward_process_matches_formula():
    s = linear_schedule(300)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 28, 28, generator=g)
    eps = torch.randn(4, 1, 28, 28, generator=g)
    k = torch.tensor([0, 10, 150, 299])
    out = forward_process(x0, k, s, eps)
    for i in range(4):
        abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 300, dtype=torch.float64), 0)[k[i]].float()
        torch.testing.assert_close(out[i], abar.sqrt() * x0[i] + (1 - abar).sqrt() * eps[i])
    assert out.dtype == x0.dtype
    # k = -1 is the clean image
    torch.testing.assert_close(forward_process(x0, torch.full((4,), -1), s, eps), x0)


def test_strided_timesteps():
    ts = strided_timesteps(1000, 30)
    assert ts == list(range(990, -1, -30))
    assert len(ts) == 34
    assert ts[10] == 690
    assert ts[0] == 990 and ts[-1] == 0
    assert strided_timesteps(300, 1) == list(range(299, -1, -1))
    assert strided_timesteps(1000, 30, start=500) == list(range(500, -1, -30))
    for bad in (0, -1, 1001):
        with pytest.raises(ValueError):
            strided_timesteps(1000, bad)


def test_evenly_spaced_timesteps():
    assert evenly_spaced_timesteps(300, 300) == list(range(299, -1, -1))
    ts = evenly_spaced_timesteps(300, 50)
    assert len(ts) == 50 and ts[0] == 299 and ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert evenly_spaced_timesteps(300, 1) == [299]
    for steps in range(2, 301):  # never merges two steps, always spans T-1 .. 0
        ts = evenly_spaced_timesteps(300, steps)
        assert len(ts) == steps and ts[0] == 299 and ts[-1] == 0
    for bad in (0, 301):
        with pytest.raises(ValueError):
            evenly_spaced_timesteps(300, bad)


def test_cosine_schedule_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    ours = cosine_schedule(1000)
    assert ours.T == 1000
    torch.testing.assert_close(ours.betas, ref.betas.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod.double(), atol=1e-5, rtol=0)
    assert ours.betas.max().item() <= 0.999


def test_schedule_to_dict_roundtrip():
    s = linear_schedule(10)
    again = Schedule(torch.tensor(s.to_dict()["betas"], dtype=torch.float64))
    torch.testing.assert_close(again.betas, s.betas)
