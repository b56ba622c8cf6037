"""sampling/guidance.py: classifier-free guidance over two bound denoisers."""

from __future__ import annotations

import pytest
import torch

from fundiff.core.guidance import cfg
from fundiff.core.model import Prediction

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


def test_limited_interval_guides_only_where_active():
    from fundiff.core.guidance import limited_interval

    guided = cfg(cond, uncond, 5.0)
    fn = limited_interval(guided, cond, lambda k: int(k[0]) >= 150)
    torch.testing.assert_close(fn(X, torch.tensor([200, 200])).eps, guided(X, K).eps)
    torch.testing.assert_close(fn(X, torch.tensor([100, 100])).eps, cond(X, K).eps)


def test_digit_guidance_interval_maps_k_to_the_noise_level():
    """DDPM: level t / T = (k + 1) / T; the unconditional net is called only inside the interval."""
    from fundiff.core.schedule import linear_schedule
    from fundiff.nets.unet import UNet, UNetConfig
    from fundiff.sampling.digits import guided_denoiser

    net = UNet(UNetConfig(8, "class")).eval()
    calls = []
    net.register_forward_hook(lambda m, inp, out: calls.append(bool(inp[2].abs().sum() == 0)))
    fn = guided_denoiser(net, linear_schedule(300), torch.tensor([3]), 5.0, interval=(0.5, 1.0))
    x = torch.randn(1, 1, 28, 28)
    fn(x, torch.tensor([149]))  # t / T = 150 / 300 = 0.5: guided -> conditional and null calls
    assert calls == [False, True]
    calls.clear()
    fn(x, torch.tensor([148]))  # 149 / 300 < 0.5: the conditional estimate alone
    assert calls == [False]
