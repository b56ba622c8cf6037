"""DPM-Solver++(2M): parity with diffusers' DPMSolverMultistepScheduler, and its second order on a Gaussian, where
the probability-flow ODE is solved exactly (data N(mu, s^2): the clean image is mu + s z for the noise's z-score)."""

from __future__ import annotations

import math

import pytest
import torch

from fundiff.core.contract import Prediction, Velocity
from fundiff.core.loop import ddpm_step, dpm_solver_step, euler_step, run_loop
from fundiff.core.sampling import Sampling
from fundiff.core.schedule import FlowPath, linear_schedule, solver_timesteps

T, MU, S = 300, 0.3, 0.2
SCHEDULE = linear_schedule(T)


def _noise(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _toy_eps(x, k):
    return 0.3 * x + 0.1 * torch.sin(3 * x + k.float().view(-1, 1, 1, 1) / 50)


def _gauss_eps(x, k):
    """E[eps | x_t] for data N(MU, S^2): sqrt(1 - abar) (x - sqrt(abar) MU) / (abar S^2 + 1 - abar)."""
    abar = SCHEDULE.abar(k).float().view(-1, 1, 1, 1)
    return Prediction((1 - abar).sqrt() * (x - abar.sqrt() * MU) / (abar * S * S + 1 - abar))


def _gauss_velocity(x, t):
    """E[x1 - x0 | x_t] on the path x_t = (1 - t) x0 + t x1, x1 ~ N(MU, S^2)."""
    t = t.float().view(-1, 1, 1, 1)
    return Velocity(MU + (t * S * S - (1 - t)) / ((1 - t) ** 2 + t * t * S * S) * (x - t * MU))


@pytest.mark.parametrize("steps", [15, 20, 50])
def test_matches_diffusers_dpm_solver_multistep(steps):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02,
                                                  beta_schedule="linear", algorithm_type="dpmsolver++",
                                                  solver_order=2, prediction_type="epsilon")
    sched.set_timesteps(steps)
    ks = solver_timesteps(T, steps)
    assert sched.timesteps.tolist() == ks == Sampling(sampler="dpmpp-2m", steps=steps).timesteps(T)
    x_T = _noise(2, 1, 8, 8)
    x = x_T.clone()
    for k in sched.timesteps:
        x = sched.step(_toy_eps(x, torch.full((2,), int(k))), k, x).prev_sample
    ours = run_loop(lambda x, k: Prediction(_toy_eps(x, k)), x_T, SCHEDULE.levels(ks), dpm_solver_step(SCHEDULE))
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=0)


def _ddpm_error(step, steps):
    x_T = _noise(64, 1, 4, 4, seed=1)
    a_T = float(SCHEDULE.abar(T - 1))
    exact = MU + S * (x_T - math.sqrt(a_T) * MU) / math.sqrt(a_T * S * S + 1 - a_T)
    out = run_loop(_gauss_eps, x_T, SCHEDULE.levels(solver_timesteps(T, steps)), step)
    return float((out - exact).abs().max())


def _flow_error(step, steps):
    z = _noise(64, 1, 4, 4, seed=1)
    out = run_loop(_gauss_velocity, z, FlowPath(T).levels(solver_timesteps(T, steps)), step)
    return float((out - (MU + S * z)).abs().max())


def test_second_order_on_a_ddpm_schedule():
    """Doubling 20 -> 40 steps cuts DPM-Solver++(2M)'s error by more than 3 (DDIM's, first order: by about 2)."""
    e20, e40 = _ddpm_error(dpm_solver_step(SCHEDULE), 20), _ddpm_error(dpm_solver_step(SCHEDULE), 40)
    assert e20 / e40 > 3
    assert e40 < _ddpm_error(ddpm_step(SCHEDULE, "ddim"), 40) / 3


def test_second_order_on_a_flow_path():
    """The same solver on the flow path (alpha = t, sigma = 1 - t) beats Euler at the same number of steps."""
    path = FlowPath(T)
    e10, e20 = _flow_error(dpm_solver_step(path), 10), _flow_error(dpm_solver_step(path), 20)
    assert e10 / e20 > 3
    assert e20 < _flow_error(euler_step, 20) / 3


def test_a_reused_step_starts_afresh_on_a_new_trajectory():
    """The solver keeps the previous x0_hat only while the levels follow on: a second run gives the same bytes."""
    step, levels = dpm_solver_step(SCHEDULE), SCHEDULE.levels(solver_timesteps(T, 10))
    x_T = _noise(2, 1, 8, 8)
    first = run_loop(lambda x, k: Prediction(_toy_eps(x, k)), x_T, levels, step)
    assert torch.equal(first, run_loop(lambda x, k: Prediction(_toy_eps(x, k)), x_T, levels, step))


def test_clipped_x0_hat_stays_in_range():
    out = run_loop(lambda x, k: Prediction(-3 * x), _noise(2, 1, 8, 8), SCHEDULE.levels(solver_timesteps(T, 10)),
                   dpm_solver_step(SCHEDULE, clip=(-1.0, 1.0)))
    assert out.abs().max() <= 1.0 + 1e-6
