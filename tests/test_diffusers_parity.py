"""Parity with diffusers' DDPMScheduler configured like DeepFloyd IF stage I (spec.md Part A).

Stage I: T = 1000, ``squaredcos_cap_v2`` betas, ``variance_type="learned_range"``, epsilon prediction
(thresholding off here: fundiff's update does not threshold). The strided loop is spec 1.4's
990, 960, ..., 30, 0, passed to diffusers as custom timesteps; diffusers then takes the step
t -> t' to the next entry of that list (``previous_timestep``) and adds no noise at t = 0.
The noise is matched by seeding two identical generators: diffusers draws it with
``randn_tensor(eps.shape, generator=g, dtype=eps.dtype)`` (one CPU ``torch.randn`` call per step).
"""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers.utils.torch_utils import randn_tensor  # noqa: E402

from fundiff.core.loop import ddpm_update, sample_loop  # noqa: E402
from fundiff.core.model import Prediction  # noqa: E402
from fundiff.core.schedule import cosine_schedule, forward_process, strided_timesteps  # noqa: E402

STRIDED = list(range(990, -1, -30))
C, H = 3, 8  # image channels and size of the test tensors


def _if_stage1_scheduler(timesteps: list[int] | None = None):
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                    variance_type="learned_range", prediction_type="epsilon",
                                    thresholding=False, clip_sample=False)
    if timesteps is not None:
        sched.set_timesteps(timesteps=timesteps)
    return sched


def _randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_strided_list_is_the_spec_one():
    assert strided_timesteps(1000, 30) == STRIDED
    assert len(STRIDED) == 34 and STRIDED[10] == 690
    sched = _if_stage1_scheduler(STRIDED)
    assert sched.custom_timesteps
    assert sched.timesteps.tolist() == STRIDED
    # diffusers' step from t goes to the next entry of the custom list, and from 0 to the clean image
    assert [int(sched.previous_timestep(t)) for t in STRIDED] == STRIDED[1:] + [-1]


def test_cosine_alphas_cumprod_match_diffusers():
    sched = _if_stage1_scheduler()
    ours = cosine_schedule(1000)
    torch.testing.assert_close(ours.betas, sched.betas.double(), atol=1e-6, rtol=0,
                               msg=lambda m: f"betas differ beyond atol 1e-6: {m}")
    torch.testing.assert_close(ours.alphas_cumprod, sched.alphas_cumprod.double(), atol=1e-6, rtol=0,
                               msg=lambda m: f"alphas_cumprod differ beyond atol 1e-6: {m}")


@pytest.mark.parametrize("ks", [[0, 1, 2, 3], [250, 500, 750, 999], [990, 690, 30, 0]])
def test_forward_process_matches_add_noise(ks):
    sched = _if_stage1_scheduler()
    x0 = torch.rand(4, C, H, H, generator=torch.Generator().manual_seed(1)) * 2 - 1
    eps = _randn(4, C, H, H, seed=2)
    k = torch.tensor(ks)
    ours = forward_process(x0, k, cosine_schedule(1000), eps)
    ref = sched.add_noise(x0, eps, k)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5,
                               msg=lambda m: f"forward process vs add_noise beyond 1e-5 (float32): {m}")


def _six_channel_output(seed: int) -> torch.Tensor:
    """A stage-I-like model output: eps in channels 0-2, learned-range v in [-1, 1] in channels 3-5."""
    eps = _randn(2, C, H, H, seed=seed)
    v = torch.rand(2, C, H, H, generator=torch.Generator().manual_seed(seed + 1)) * 2 - 1
    return torch.cat([eps, v], dim=1)


@pytest.mark.parametrize("index", [0, 1, 10, 20, 32, 33])
def test_one_strided_learned_variance_step_matches_diffusers(index):
    sched = _if_stage1_scheduler(STRIDED)
    s = cosine_schedule(1000)
    k = STRIDED[index]
    k_prev = STRIDED[index + 1] if index + 1 < len(STRIDED) else -1
    x_t = _randn(2, C, H, H, seed=10 + index)
    out = _six_channel_output(seed=40 + index)
    ref = sched.step(out, k, x_t, generator=torch.Generator().manual_seed(7))
    # the noise diffusers drew: same seed, same call (shape of eps, dtype of the model output)
    noise = None if k == 0 else randn_tensor((2, C, H, H), generator=torch.Generator().manual_seed(7),
                                             dtype=out.dtype)
    assert (noise is None) == (k_prev == -1)
    pred = Prediction(out[:, :C], out[:, C:])
    ours, x0_hat = ddpm_update(x_t, pred, s.abar(k).float(), s.abar(k_prev).float(), noise, variance="learned")
    torch.testing.assert_close(x0_hat, ref.pred_original_sample, atol=1e-5, rtol=1e-5,
                               msg=lambda m: f"x0_hat at t={k} beyond 1e-5 (float32): {m}")
    torch.testing.assert_close(ours, ref.prev_sample, atol=1e-5, rtol=1e-5,
                               msg=lambda m: f"learned-variance step t={k} -> {k_prev} beyond 1e-5 (float32): {m}")


def test_learned_variance_matters_in_the_step():
    """Guard against a vacuous parity: v = +1 and v = -1 give different steps in both libraries."""
    sched = _if_stage1_scheduler(STRIDED)
    x_t, eps = _randn(1, C, H, H, seed=3), _randn(1, C, H, H, seed=4)
    outs = []
    for v in (1.0, -1.0):
        out = torch.cat([eps, torch.full_like(eps, v)], dim=1)
        outs.append(sched.step(out, 690, x_t, generator=torch.Generator().manual_seed(0)).prev_sample)
    assert not torch.allclose(outs[0], outs[1], atol=1e-3)


class _FakeStage1:
    """A deterministic 6-channel 'UNet' that behaves like a trained one: its clean-image guess
    x0 = tanh(W x_t + b t / T) is a fixed random linear map squashed into [-1, 1], its eps is the noise
    that guess implies, eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t), and v = tanh(W' x_t + b' t / T)."""

    def __init__(self, alphas_cumprod: torch.Tensor, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(2 * C, C, generator=g) / C
        self.b = torch.randn(2 * C, generator=g)
        self.abar = alphas_cumprod.float()

    def __call__(self, x_t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("oc,bchw->bohw", self.w, x_t)
        h = torch.tanh(h + (self.b[None, :] * k.float()[:, None] / 1000)[..., None, None])
        abar = self.abar[k].reshape(-1, 1, 1, 1)
        eps = (x_t - abar.sqrt() * h[:, :C]) / (1 - abar).sqrt()
        return torch.cat([eps, h[:, C:]], dim=1)


def test_strided_learned_variance_sampling_loop_matches_diffusers():
    sched = _if_stage1_scheduler(STRIDED)
    model = _FakeStage1(sched.alphas_cumprod)

    def eps_fn(x_t, k):
        out = model(x_t, k)
        return Prediction(out[:, :C], out[:, C:])

    x_T = _randn(2, C, H, H, seed=30)
    steps = []
    ours = sample_loop(eps_fn, x_T, STRIDED, cosine_schedule(1000), torch.Generator().manual_seed(31),
                       "ddpm", "learned", callback=lambda d: steps.append(d["k"]))
    assert steps == STRIDED
    g, ref = torch.Generator().manual_seed(31), x_T
    for t in sched.timesteps:
        ref = sched.step(model(ref, torch.full((2,), int(t))), t, ref, generator=g).prev_sample
    assert ours.dtype == ref.dtype == torch.float32
    assert torch.isfinite(ours).all() and ours.abs().max() < 1.5  # a clean image in about [-1, 1]
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4,
                               msg=lambda m: f"34-step learned-variance loop beyond 1e-4 (float32): {m}")
