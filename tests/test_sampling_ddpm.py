"""core/loop.py: the spec's DDPM step, DDIM, variances, the sampling loop, and diffusers parity."""

from __future__ import annotations

import math

import pytest
import torch

from fundiff.core.contract import Prediction, Velocity
from fundiff.core.loop import ddim_update, ddpm_update, euler_loop, predict_x0, sample_loop, step_variance
from fundiff.core.schedule import evenly_spaced_timesteps, forward_process, linear_schedule, strided_timesteps


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def oracle(x0: torch.Tensor, schedule):
    """The perfect denoiser for a single data point x0: eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)."""

    def eps_fn(x_t, k):
        abar = schedule.abar(k).to(x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
        return Prediction((x_t - abar.sqrt() * x0) / (1 - abar).sqrt())

    return eps_fn


@pytest.mark.parametrize("k", [0, 1, 150, 299])
def test_ddpm_update_stride_one_is_the_spec_formula(k):
    """Part B: x_{t-1} = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0_hat
    + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t + sqrt(beta_t) z, with t = k + 1."""
    T = 300
    betas = [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]  # linspace(1e-4, 0.02, 300)
    abars = [math.prod(1 - b for b in betas[: i + 1]) for i in range(T)]  # abar_t = abars[t - 1]
    t = k + 1
    abar_t, abar_prev = abars[t - 1], (abars[t - 2] if t > 1 else 1.0)
    beta_t, alpha_t = betas[t - 1], 1 - betas[t - 1]
    x_t, eps, z = _randn(3, 1, 28, 28, seed=1), _randn(3, 1, 28, 28, seed=2), _randn(3, 1, 28, 28, seed=3)
    x0_hat = (x_t - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)
    expected = (math.sqrt(abar_prev) * beta_t / (1 - abar_t) * x0_hat
                + math.sqrt(alpha_t) * (1 - abar_prev) / (1 - abar_t) * x_t + math.sqrt(beta_t) * z)
    s = linear_schedule(T)
    out, x0 = ddpm_update(x_t, Prediction(eps), s.abar(k), s.abar(k - 1), z, variance="beta")
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x0, x0_hat, rtol=1e-9, atol=1e-9)
    mean, _ = ddpm_update(x_t, Prediction(eps), s.abar(k), s.abar(k - 1), None, variance="beta")
    torch.testing.assert_close(mean, expected - math.sqrt(beta_t) * z, rtol=1e-9, atol=1e-9)


def test_ddpm_update_noise_none_returns_mean_for_every_variance():
    s = linear_schedule(300)
    x_t, eps = _randn(2, 1, 4, 4, seed=4), _randn(2, 1, 4, 4, seed=5)
    pred = Prediction(eps, variance=torch.zeros(2, 1, 4, 4, dtype=torch.float64))
    outs = [ddpm_update(x_t, pred, s.abar(100), s.abar(90), None, v)[0] for v in ("beta", "posterior", "learned")]
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2])
    # and the noise enters as sqrt(var) z
    z = _randn(2, 1, 4, 4, seed=6)
    noisy, _ = ddpm_update(x_t, pred, s.abar(100), s.abar(90), z, "posterior")
    var = step_variance(pred, s.abar(100), s.abar(90), "posterior")
    torch.testing.assert_close(noisy, outs[0] + var.sqrt() * z)


def test_predict_x0_inverts_forward_process():
    s = linear_schedule(300)
    x0, eps = torch.rand(5, 1, 28, 28, dtype=torch.float64), _randn(5, 1, 28, 28, seed=7)
    for k in (0, 57, 299):
        x_t = forward_process(x0, torch.full((5,), k), s, eps)
        torch.testing.assert_close(predict_x0(x_t, eps, s.abar(k)), x0, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("k", "k_prev"), [(299, 289), (150, 0), (10, -1), (0, -1)])
def test_ddim_with_true_eps_lands_on_the_previous_noise_level(k, k_prev):
    s = linear_schedule(300)
    x0, eps = torch.rand(3, 1, 28, 28, dtype=torch.float64), _randn(3, 1, 28, 28, seed=8)
    x_t = forward_process(x0, torch.full((3,), k), s, eps)
    out, x0_hat = ddim_update(x_t, Prediction(eps), s.abar(k), s.abar(k_prev))
    expected = s.abar(k_prev).sqrt() * x0 + (1 - s.abar(k_prev)).sqrt() * eps
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-9, atol=1e-9)


def test_ddim_clip_keeps_x0_and_eps_consistent():
    s = linear_schedule(300)
    x_t, eps = 3 * _randn(2, 1, 6, 6, seed=9), _randn(2, 1, 6, 6, seed=10)
    out, x0_hat = ddim_update(x_t, Prediction(eps), s.abar(200), s.abar(100), clip=(-1.0, 1.0))
    assert x0_hat.min() >= -1 and x0_hat.max() <= 1
    eps_hat = (x_t - s.abar(200).sqrt() * x0_hat) / (1 - s.abar(200)).sqrt()
    torch.testing.assert_close(out, s.abar(100).sqrt() * x0_hat + (1 - s.abar(100)).sqrt() * eps_hat)


def test_step_variance_formulas():
    s = linear_schedule(300)
    abar_t, abar_prev = s.abar(200), s.abar(170)  # a strided step
    beta = 1 - abar_t / abar_prev
    post = beta * (1 - abar_prev) / (1 - abar_t)
    pred = Prediction(torch.zeros(1))
    torch.testing.assert_close(step_variance(pred, abar_t, abar_prev, "beta"), beta)
    torch.testing.assert_close(step_variance(pred, abar_t, abar_prev, "posterior"), post)
    assert post < beta
    v = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
    learned = step_variance(Prediction(torch.zeros(3), v), abar_t, abar_prev, "learned")
    torch.testing.assert_close(learned[0], beta)
    torch.testing.assert_close(learned[1], post)
    torch.testing.assert_close(learned[2], (beta * post).sqrt())  # halfway in log space
    with pytest.raises(ValueError):
        step_variance(pred, abar_t, abar_prev, "learned")
    # the very last step (to the clean image) has zero posterior variance, clamped positive
    last = step_variance(pred, s.abar(0), s.abar(-1), "posterior")
    assert 0 < last.item() <= 1e-19


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("timesteps", [list(range(299, -1, -1)), evenly_spaced_timesteps(300, 7), [150]])
def test_sample_loop_with_the_oracle_ends_exactly_on_x0(sampler, timesteps):
    """A perfect denoiser of one image x0: every x0_hat is x0, and the last step returns x0 exactly,
    whatever the timesteps and noise (the last step adds none and abar after it is 1)."""
    s = linear_schedule(300)
    x0 = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    x = _randn(3, 1, 28, 28, seed=11)
    seen = []

    def callback(d):
        seen.append(d["k"])
        torch.testing.assert_close(d["x0_hat"], x0, rtol=1e-6, atol=1e-6)

    out = sample_loop(oracle(x0, s), x, timesteps, s, torch.Generator().manual_seed(0), sampler, "beta",
                      callback=callback)
    assert seen == list(timesteps)
    torch.testing.assert_close(out, x0, rtol=1e-6, atol=1e-6)


def _marginal_errors(variance: str) -> list[tuple[float, float, float, float]]:
    """Run the oracle DDPM from x_T ~ q(x_T | x0) and record (mean, expected mean, var, expected var)."""
    s = linear_schedule(300)
    ts = evenly_spaced_timesteps(300, 15)
    n, x0 = 40_000, 0.7
    x = forward_process(torch.full((n, 1), x0, dtype=torch.float64), torch.full((n,), ts[0]), s,
                        _randn(n, 1, seed=12))
    nxt = dict(zip(ts, ts[1:] + [-1]))
    rows = []

    def callback(d):
        a = s.abar(nxt[d["k"]]).item()
        rows.append((d["x"].mean().item(), math.sqrt(a) * x0, d["x"].var().item(), 1 - a))

    sample_loop(oracle(torch.tensor(x0, dtype=torch.float64), s), x, ts, s, torch.Generator().manual_seed(1),
                "ddpm", variance, callback=callback)
    return rows


def test_sample_loop_posterior_variance_keeps_the_forward_marginals():
    """With the true posterior variance, each strided DDPM step maps q(x_t | x0) to q(x_t' | x0)."""
    rows = _marginal_errors("posterior")
    for mean, mean_ref, var, var_ref in rows[:-1]:
        assert mean == pytest.approx(mean_ref, abs=0.02)
        assert var == pytest.approx(var_ref, rel=0.05, abs=1e-4)
    assert rows[-1][2] < 1e-20  # the clean image: no spread left


def test_sample_loop_beta_variance_overshoots_on_strided_steps():
    """Sanity check of the test above: the spec's sigma^2 = beta_t is too large for strided steps."""
    rows = _marginal_errors("beta")
    assert any(var > 1.2 * var_ref for _, _, var, var_ref in rows[:-1])


def test_sample_loop_noise_comes_from_the_generator():
    s = linear_schedule(300)
    x = _randn(2, 1, 8, 8, seed=13)

    def eps_fn(x_t, k):
        return Prediction(0.1 * x_t)

    ts = evenly_spaced_timesteps(300, 10)
    a = sample_loop(eps_fn, x, ts, s, torch.Generator().manual_seed(5))
    b = sample_loop(eps_fn, x, ts, s, torch.Generator().manual_seed(5))
    c = sample_loop(eps_fn, x, ts, s, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    d1 = sample_loop(eps_fn, x, ts, s, torch.Generator().manual_seed(5), sampler="ddim")
    d2 = sample_loop(eps_fn, x, ts, s, torch.Generator().manual_seed(6), sampler="ddim")
    assert torch.equal(d1, d2)  # DDIM (eta = 0) draws no noise


def test_euler_loop_integrates_a_constant_velocity_exactly():
    x = _randn(2, 1, 4, 4, seed=14)
    target = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    times = []

    def velocity(x_t, t):
        times.append(t[0].item())
        return Velocity(target - x)  # constant: x(1) = x(0) + (target - x(0))

    out = euler_loop(velocity, x, 10)
    torch.testing.assert_close(out, target)
    assert times == pytest.approx([i / 10 for i in range(10)])


# ---- parity with diffusers' DDPMScheduler -------------------------------------------------------------

def _diffusers_scheduler(timesteps):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                    beta_end=0.02, variance_type="fixed_small", clip_sample=False)
    sched.set_timesteps(timesteps=timesteps)
    return sched


@pytest.mark.parametrize("index", [0, 10, 32, 33])
def test_one_strided_posterior_step_matches_diffusers(index):
    ts = strided_timesteps(1000, 30)
    sched = _diffusers_scheduler(ts)
    s = linear_schedule(1000)
    k, k_prev = ts[index], (ts[index + 1] if index + 1 < len(ts) else -1)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(20))
    eps = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(21))
    ref = sched.step(eps, k, x, generator=torch.Generator().manual_seed(22)).prev_sample
    noise = None if k_prev < 0 else torch.randn(x.shape, generator=torch.Generator().manual_seed(22))
    ours, _ = ddpm_update(x, Prediction(eps), s.abar(k).float(), s.abar(k_prev).float(), noise, "posterior")
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_strided_posterior_sampling_loop_matches_diffusers():
    ts = strided_timesteps(1000, 30)
    sched = _diffusers_scheduler(ts)
    s = linear_schedule(1000)

    def eps_fn(x_t, k):
        return Prediction(0.3 * torch.tanh(x_t) + 0.001 * k.float().reshape(-1, 1, 1, 1))

    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(30))
    ours = sample_loop(eps_fn, x, ts, s, torch.Generator().manual_seed(31), "ddpm", "posterior")
    g, ref = torch.Generator().manual_seed(31), x
    for k in sched.timesteps:
        ref = sched.step(eps_fn(ref, torch.full((2,), int(k))).eps, k, ref, generator=g).prev_sample
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
