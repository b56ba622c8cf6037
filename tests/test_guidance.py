"""core/guidance.py: classifier-free guidance over two bound denoisers (noise or velocity) and its gate."""

from __future__ import annotations

import pytest
import torch

from fundiff.core.contract import Prediction, Velocity
from fundiff.core.guidance import cfg

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


def test_cfg_combines_velocities_too():
    def vc(x_t, t):
        return Velocity(EPS_C + x_t)

    def vu(x_t, t):
        return Velocity(EPS_U + x_t)

    out = cfg(vc, vu, 5.0)(X, torch.tensor([0.5, 0.5]))
    assert isinstance(out, Velocity)
    torch.testing.assert_close(out.v, (EPS_U + X) + 5.0 * ((EPS_C + X) - (EPS_U + X)))


def test_guidance_gate():
    """CFG where the noise level is in the interval (ends included), the conditional estimate elsewhere; just
    the conditional denoiser for gamma = 1 or without an unconditional one."""
    from fundiff.core.guidance import guidance_gate

    assert guidance_gate(cond, None, 5.0, (0.5, 1.0), float) is cond
    assert guidance_gate(cond, uncond, 1.0, (0.5, 1.0), float) is cond
    fn = guidance_gate(cond, uncond, 5.0, (0.25, 0.5), lambda k: k / 100)
    guided = cfg(cond, uncond, 5.0)(X, K).eps
    for k, inside in ((25, True), (50, True), (40, True), (24, False), (51, False)):
        expected = guided if inside else cond(X, K).eps
        torch.testing.assert_close(fn(X, torch.tensor([k, k])).eps, expected)
    everywhere = guidance_gate(cond, uncond, 5.0, (0.0, 1.0), lambda k: 2.0)  # never consulted
    torch.testing.assert_close(everywhere(X, K).eps, guided)


def _digit_model(objective: str):
    from helpers import tiny_recipe

    from fundiff.models.fundiff_unet import fundiff_model
    from fundiff.nets.unet import UNet, UNetConfig

    net = UNet(UNetConfig(8, "class")).eval()
    model = fundiff_model(net, tiny_recipe("class", objective), "tiny", torch.device("cpu"))
    calls = []
    net.register_forward_hook(lambda m, inp, out: calls.append(bool(inp[2].abs().sum() == 0)))
    return model, calls


def test_digit_guidance_interval_maps_k_to_the_noise_level():
    """DDPM: level t / T = (k + 1) / T; the unconditional net is called only inside the interval."""
    from fundiff import parta
    from fundiff.core.sampling import Sampling

    model, calls = _digit_model("ddpm")
    fn = parta.guided(model, 3, parta.settings(model, Sampling(guidance=5.0, guidance_interval=(0.5, 1.0))))
    x = torch.randn(1, 1, 28, 28)
    fn(x, torch.tensor([149]))  # t / T = 150 / 300 = 0.5: guided -> conditional and null calls
    assert calls == [False, True]
    calls.clear()
    fn(x, torch.tensor([148]))  # 149 / 300 < 0.5: the conditional estimate alone
    assert calls == [False]


def test_flow_guidance_interval_uses_one_minus_t():
    """Flow: the noise level is 1 - t; the unconditional net is called only inside the interval."""
    from fundiff import parta
    from fundiff.core.sampling import Sampling

    model, calls = _digit_model("flow")
    fn = parta.guided(model, 3, parta.settings(model, Sampling(guidance=5.0, guidance_interval=(0.5, 1.0))))
    x = torch.randn(1, 1, 28, 28)
    assert isinstance(fn(x, torch.tensor([0.5])), Velocity)  # 1 - t = 0.5: guided
    assert calls == [False, True]
    calls.clear()
    fn(x, torch.tensor([0.75]))  # 1 - t = 0.25 < 0.5: the conditional estimate alone
    assert calls == [False]
