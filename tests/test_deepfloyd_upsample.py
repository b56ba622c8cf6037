"""upsample.py: DeepFloyd IF stage II over fundiff's loop (tiny random 256 px model), parity with diffusers'
IFSuperResolutionPipeline, the anagram and hybrid reductions at 256 px, naive pasting and Laplacian-pyramid
blending."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from tiny_if import tiny_if  # noqa: E402

from fundiff.errors import UserError  # noqa: E402
from fundiff.models import load_diffusion_model  # noqa: E402
from fundiff.models.deepfloyd.prompts import load_cache  # noqa: E402
from fundiff.models.deepfloyd.stage2 import (  # noqa: E402
    anagram_eps,
    laplacian_blend,
    laplacian_pyramid,
    load_upsampler,
    naive_paste,
    reconstruct,
    upsample,
    upsample_anagram,
    upsample_hybrid,
    upsample_inpainting,
)
from fundiff.parta import Sampling  # noqa: E402

FAST = Sampling(stride=250)  # 750, 500, 250, 0
PROMPT = "a photo of a dog"


@pytest.fixture(scope="module")
def up():
    tiny = tiny_if()
    return load_upsampler(load_diffusion_model(str(tiny.stage1), prompt_cache=tiny.cache), str(tiny.stage2))


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_upsampler_description(up):
    assert up.image_size == 256 and up.noise_level == 250 and up.default_guidance == 4.0
    assert up.schedule.T == up.noising.T == 1000 and up.describe()["source"].endswith("IF-II-tiny")


def test_upsample_shapes_range_and_seed(up):
    a = upsample(up, _images(), PROMPT, seed=1, sampling=FAST)
    assert a.shape == (2, 3, 256, 256) and 0 <= a.min() and a.max() <= 1 and torch.isfinite(a).all()
    assert torch.equal(a, upsample(up, _images(), PROMPT, seed=1, sampling=FAST))


@pytest.mark.parametrize("gamma", [1.0, 4.0])  # measured 3e-6 and 2e-5
def test_upsample_matches_ifsuperresolutionpipeline(up, gamma):
    """Same embeddings, image, noise_level 250, timesteps, seed and CFG; thresholding replaced by clip to [-1, 1]."""
    pipe = diffusers.IFSuperResolutionPipeline.from_pretrained(
        str(tiny_if().stage2), safety_checker=None, feature_extractor=None, watermarker=None,
        requires_safety_checker=False, low_cpu_mem_usage=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.DDPMScheduler.from_config(pipe.scheduler.config, thresholding=False, clip_sample=True,
                                                         clip_sample_range=1.0)
    emb, x = load_cache(tiny_if().cache), _images(1, 3)
    ref = pipe(image=x * 2 - 1, prompt_embeds=emb[PROMPT], negative_prompt_embeds=emb[""], guidance_scale=gamma,
               timesteps=FAST.timesteps(1000), noise_level=250, generator=torch.Generator().manual_seed(5),
               output_type="pt").images
    ours = upsample(up, x, PROMPT, gamma, seed=5, sampling=FAST)
    assert (ours - ((ref + 1) / 2).clamp(0, 1)).abs().max() < 1e-4


def test_anagram_views_the_conditioning_image_too(up):
    """Stage II of an anagram: eps = (eps(x, u, p1) + flip(eps(flip x, flip u, p2))) / 2, u the upscaled image."""
    g = torch.Generator().manual_seed(0)
    x, u, k = torch.randn(1, 3, 256, 256, generator=g), torch.randn(1, 3, 256, 256, generator=g), torch.tensor([500])
    p1, p2 = "an oil painting of an old man", "an oil painting of people around a campfire"
    eps = anagram_eps(up, u, [p1, p2], ["identity", "flip"], guidance=1.0)(x, k)
    bind = up.bind(u)
    e1 = bind(p1)(x, k)
    e2 = up.bind(u.flip(-2))(p2)(x.flip(-2), k)
    torch.testing.assert_close(eps.eps, (e1.eps + e2.eps.flip(-2)) / 2)
    torch.testing.assert_close(eps.variance, (e1.variance + e2.variance) / 2)
    out = upsample_anagram(up, _images(1), [p1, p2], ["identity", "flip"], sampling=FAST)
    assert out.shape == (1, 3, 256, 256)


def test_hybrid_bands_scale_with_the_image(up):
    from fundiff.core.bands import frequency_bands, gaussian_lowpass

    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    bands = frequency_bands(33, [2.0], 4)
    torch.testing.assert_close(bands[0](x) + bands[1](x), x, atol=1e-5, rtol=0)  # they still sum to the identity
    torch.testing.assert_close(bands[0](x), gaussian_lowpass(x, 129, 8.0), atol=1e-5, rtol=0)  # as stage I's filter
    out = upsample_hybrid(up, _images(1), ["a lithograph of a skull", "a lithograph of waterfalls"], sampling=FAST)
    assert out.shape == (1, 3, 256, 256)


def test_laplacian_pyramid_reconstructs_exactly():
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    lap = laplacian_pyramid(x, 5)
    assert [tuple(level.shape[-2:]) for level in lap] == [(256, 256), (128, 128), (64, 64), (32, 32), (16, 16)]
    torch.testing.assert_close(reconstruct(lap), x, atol=1e-5, rtol=0)


def test_laplacian_blend_keeps_each_side():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(1, 3, 256, 256, generator=g), torch.rand(1, 3, 256, 256, generator=g)
    m = torch.zeros(1, 1, 256, 256)
    m[..., :96, 96:160] = 1  # the top of the tower, at 256 px
    out = laplacian_blend(a, b, m)
    torch.testing.assert_close(laplacian_blend(a, a, m), a, atol=1e-5, rtol=0)
    torch.testing.assert_close(laplacian_blend(a, b, torch.ones_like(m)), a, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., 160:, :], b[..., 160:, :], atol=1e-5, rtol=0)  # far from the mask: b
    torch.testing.assert_close(out[..., :40, 120:136], a[..., :40, 120:136], atol=0.05, rtol=0)  # deep inside: ~a


def test_naive_paste_is_the_original_outside_the_mask_and_raw_inside():
    g = torch.Generator().manual_seed(2)
    raw, original = torch.rand(2, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    m = torch.zeros(1, 1, 32, 32)
    m[..., 4:12, 8:20] = 1
    out = naive_paste(raw, original, m)
    inside = m.bool().expand_as(raw)
    assert out.shape == raw.shape
    assert torch.equal(out[inside], raw[inside])
    assert torch.equal(out[~inside], original.expand_as(raw)[~inside])
    assert torch.equal(naive_paste(raw, original, m.bool()), out)
    with pytest.raises(UserError, match="one size"):
        naive_paste(raw, original, torch.ones(1, 1, 16, 16))


def test_upsampled_inpainting_is_pasted_and_blended_into_the_original(up):
    img, original = _images(1), torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(9))
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 2:30, 24:40] = 1
    raw, pasted, blended = upsample_inpainting(up, img, original, mask, "a high quality photo", sampling=FAST)
    assert raw.shape == pasted.shape == blended.shape == (1, 3, 256, 256)
    torch.testing.assert_close(blended[..., 200:, :], original[..., 200:, :], atol=1e-5, rtol=0)
    assert not torch.allclose(raw[..., 200:, :], original[..., 200:, :], atol=0.1)
    inside = torch.zeros(1, 3, 256, 256, dtype=torch.bool)
    inside[..., 8:120, 96:160] = True  # the 64 px box, nearest-neighbour upscaled
    assert torch.equal(pasted[inside], raw[inside]) and torch.equal(pasted[~inside], original[~inside])


@pytest.mark.parametrize("shape", [(1, 3, 64, 32), (1, 1, 64, 64), (3, 64, 64), (1, 3, 512, 512)])
def test_wrong_image_size_is_a_user_error(up, shape):
    with pytest.raises(UserError, match="stage II upsamples"):
        upsample(up, torch.rand(*shape), PROMPT, sampling=FAST)


def test_stage2_must_be_a_superresolution_pipeline():
    tiny = tiny_if()
    model = load_diffusion_model(str(tiny.stage1), prompt_cache=tiny.cache)
    with pytest.raises(UserError, match="IFSuperResolutionPipeline"):
        load_upsampler(model, str(tiny.stage1))


def test_stage_two_bound_to_its_image_is_a_model_every_operation_runs_on(up):
    """bound_model: stage II as a DiffusionModel; the same seeds give the same image, another conditioning draw
    another, and the Part A operations run on it at 256 px."""
    from fundiff import parta
    from fundiff.models.deepfloyd.stage2 import bound_model

    image = _images(1)
    model = bound_model(up, image, seed=5)
    assert model.image_size == 256 and model.sampling.guidance == 4.0 and "bound" in repr(model)
    x = parta.generate(model, PROMPT, 1, seed=2, sampling=FAST)
    assert x.shape == (1, 3, 256, 256) and torch.isfinite(x).all()
    assert torch.equal(x, parta.generate(bound_model(up, image, seed=5), PROMPT, 1, seed=2, sampling=FAST))
    assert not torch.equal(x, parta.generate(bound_model(up, image, seed=6), PROMPT, 1, seed=2, sampling=FAST))
    edited = parta.edit(model, x, PROMPT, [2], seed=0, sampling=FAST)[2]
    assert edited.shape == (1, 3, 256, 256)
    with pytest.raises(UserError, match="one 64 px image"):
        bound_model(up, _images(2))
