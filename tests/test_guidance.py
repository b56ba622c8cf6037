"""sampling/guidance.py: classifier-free guidance over two bound denoisers."""

from __future__ import annotations

import pytest
import torch

from fundiff.denoisers.base import Prediction
from fundiff.sampling.guidance import cfg

X = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
K = torch.tensor([5, 5])
EPS_C, EPS_U = torch.full((2, 1, 4, 4), 3.0), torch.full((2, 1, 4, 4), -1.0)
VAR_C, VAR_U = torch.full((2, 1, 4, 4), 0.25), torch.full((2, 1, 4, 4), -0.75)


def cond(x_t, k):
    return Prediction(EPS_C + x_t, VAR_C)


def uncond(x_t, k):
    return Prediction(EPS_U + x_t, VAR_U)


def test_gamma_zero_is_unconditional_and_one_is_conditional():
    torch.testing.assert_close(cfg(cond, uncond, 0.0)(X, K).eps, EPS_U + X)
    torch.testing.assert_close(cfg(cond, uncond, 1.0)(X, K).eps, EPS_C + X)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 5.0, 7.5])
def test_guided_eps_formula_and_conditional_variance(gamma):
    out = cfg(cond, uncond, gamma)(X, K)
    torch.testing.assert_close(out.eps, (EPS_U + X) + gamma * ((EPS_C + X) - (EPS_U + X)))
    torch.testing.assert_close(out.variance, VAR_C)  # the variance comes from the conditional model


def test_guidance_passes_x_and_k_to_both_models():
    calls = []

    def rec(name):
        def f(x_t, k):
            calls.append((name, x_t, k))
            return Prediction(torch.zeros_like(x_t))
        return f

    cfg(rec("c"), rec("u"), 5.0)(X, K)
    assert sorted(c[0] for c in calls) == ["c", "u"]
    for _, x_t, k in calls:
        assert x_t is X and k is K
