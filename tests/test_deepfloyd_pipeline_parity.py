"""models/deepfloyd/pipeline.py: Part 0 as diffusers' IFPipeline and IFSuperResolutionPipeline make it (their
timesteps, draws, batched CFG, dynamic thresholding, noise_level), compared with the pipelines themselves on tiny
random IF models; and `fundiff generate --steps-1 --steps-2` writing those images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from helpers import fundiff_in_process  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_if import tiny_if  # noqa: E402

from fundiff.models import load_diffusion_model  # noqa: E402
from fundiff.models.deepfloyd.pipeline import pipeline_timesteps, super_resolve, text_to_image  # noqa: E402
from fundiff.models.deepfloyd.prompts import load_cache  # noqa: E402
from fundiff.models.deepfloyd.stage2 import load_upsampler  # noqa: E402

PROMPT, OTHER = "a photo of a dog", "a rocket ship"
_NONE = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False,
             low_cpu_mem_usage=False)

# Max |difference| on [0, 1] images. The UNet calls agree bitwise (one batched CFG call, as the pipelines); fundiff's
# step runs in float64, diffusers' in float32. Measured: gamma <= 2: 5e-6 (stage I), 5e-6 (stage II); gamma 4:
# 7e-5 / 2e-5; "trailing" spacing (from t = 999, where float32 x0_hat loses 4 digits): 4e-5. At IF's gamma 7 the
# random tiny UNet is chaotic: IFPipeline's own output moves by 1e-2 when x_T is scaled by 1 + 1e-6, and
# fundiff's differs from it by 6e-5 (5 steps) to 2e-3 (13 steps).
TIGHT, GUIDED, CHAOTIC = 5e-5, 3e-4, 2e-2


@pytest.fixture(scope="module")
def model():
    tiny = tiny_if()
    return load_diffusion_model(str(tiny.stage1), prompt_cache=tiny.cache)


@pytest.fixture(scope="module")
def up(model):
    return load_upsampler(model, str(tiny_if().stage2))


@pytest.fixture(scope="module")
def pipe1():
    pipe = diffusers.IFPipeline.from_pretrained(str(tiny_if().stage1), text_encoder=None, tokenizer=None, **_NONE)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe2():
    pipe = diffusers.IFSuperResolutionPipeline.from_pretrained(str(tiny_if().stage2), **_NONE)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def emb() -> dict[str, torch.Tensor]:
    return load_cache(tiny_if().cache)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """A pipeline's output_type="pt" images ([-1, 1]) as fundiff returns them: [0, 1], clamped."""
    return ((x + 1) / 2).clamp(0, 1)


def _stage1_ref(pipe1, emb, prompts: list[str], n: int, steps: int, gamma: float, seed: int) -> torch.Tensor:
    return pipe1(prompt_embeds=torch.cat([emb[p] for p in prompts]),
                 negative_prompt_embeds=torch.cat([emb[""]] * len(prompts)), num_inference_steps=steps,
                 guidance_scale=gamma, num_images_per_prompt=n, generator=torch.Generator().manual_seed(seed),
                 output_type="pt").images


def _stage2_ref(pipe2, emb, images: torch.Tensor, steps: int, gamma: float, seed: int, noise_level: int = 250
                ) -> torch.Tensor:
    n = images.shape[0]
    return pipe2(image=images * 2 - 1, prompt_embeds=emb[PROMPT].expand(n, -1, -1),
                 negative_prompt_embeds=emb[""].expand(n, -1, -1), num_inference_steps=steps, guidance_scale=gamma,
                 noise_level=noise_level, generator=torch.Generator().manual_seed(seed), output_type="pt").images


def test_timesteps_are_the_schedulers(model, up):
    """IF's schedulers space steps by "leading": 100 -> 990, 980, ..., 0 and 50 -> 980, 960, ..., 0."""
    assert pipeline_timesteps(model.pipe.scheduler, 100) == list(range(990, -1, -10))
    assert pipeline_timesteps(up.pipe.scheduler, 50) == list(range(980, -1, -20))
    assert pipeline_timesteps(model.pipe.scheduler, 13) == list(range(912, -1, -76))


@pytest.mark.parametrize(("steps", "gamma", "tol"), [(5, 1.0, TIGHT), (13, 1.0, TIGHT), (13, 2.0, TIGHT),
                                                     (5, 4.0, GUIDED), (13, 7.0, CHAOTIC)])
def test_text_to_image_matches_ifpipeline(model, pipe1, emb, steps, gamma, tol):
    ours = text_to_image(model, PROMPT, 2, steps, gamma, seed=3, progress=False)
    ref = _stage1_ref(pipe1, emb, [PROMPT], 2, steps, gamma, 3)
    assert ours.shape == (2, 3, 64, 64)
    assert (ours - _unit(ref)).abs().max() < tol


def test_several_prompts_are_repeated_in_order(model, pipe1, emb):
    """P prompts, n each: (P n) images, prompt-major, as num_images_per_prompt makes them."""
    ours = text_to_image(model, [PROMPT, OTHER], 2, 5, 2.0, seed=1, progress=False)
    ref = _stage1_ref(pipe1, emb, [PROMPT, OTHER], 2, 5, 2.0, 1)
    assert ours.shape == (4, 3, 64, 64) and (ours - _unit(ref)).abs().max() < TIGHT


def test_trailing_spacing_draws_noise_on_a_last_step_above_zero(model, pipe1, emb, monkeypatch):
    """With "trailing" spacing the last timestep is 199 (5 steps): DDPMScheduler.step draws z there too
    (t > 0), with the posterior variance clamped at 1e-20; fundiff follows the scheduler config it is given."""
    config = dict(model.pipe.scheduler.config)
    monkeypatch.setattr(model.pipe, "scheduler", diffusers.DDPMScheduler.from_config(config,
                                                                                      timestep_spacing="trailing"))
    monkeypatch.setattr(pipe1, "scheduler", diffusers.DDPMScheduler.from_config(config, timestep_spacing="trailing"))
    assert pipeline_timesteps(model.pipe.scheduler, 5)[-1] == 199
    ours = text_to_image(model, PROMPT, 1, 5, 2.0, seed=4, progress=False)
    assert (ours - _unit(_stage1_ref(pipe1, emb, [PROMPT], 1, 5, 2.0, 4))).abs().max() < GUIDED


@pytest.mark.parametrize(("steps", "gamma", "tol"), [(3, 1.0, TIGHT), (3, 4.0, TIGHT), (7, 4.0, GUIDED)])
def test_super_resolve_matches_ifsuperresolutionpipeline(up, pipe2, emb, steps, gamma, tol):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = super_resolve(up, images, PROMPT, steps, gamma, seed=5, progress=False)
    assert ours.shape == (2, 3, 256, 256)
    assert (ours - _unit(_stage2_ref(pipe2, emb, images, steps, gamma, 5))).abs().max() < tol


def test_super_resolve_noise_level(up, pipe2, emb):
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    ours = super_resolve(up, images, PROMPT, 2, 4.0, seed=6, noise_level=100, progress=False)
    assert (ours - _unit(_stage2_ref(pipe2, emb, images, 2, 4.0, 6, noise_level=100))).abs().max() < TIGHT


def test_stage2_without_cfg_at_guidance_up_to_one(up):
    """diffusers guides only when guidance_scale > 1; so does the Part A upsampler (gamma 0.5: the prompt alone)."""
    g = torch.Generator().manual_seed(0)
    x, u, k = torch.randn(1, 3, 256, 256, generator=g), torch.randn(1, 3, 256, 256, generator=g), torch.tensor([500])
    plain = up.bind(u)(PROMPT)(x, k)
    for gamma in (0.5, 1.0):
        torch.testing.assert_close(up.guided(PROMPT, u, gamma)(x, k).eps, plain.eps, atol=0, rtol=0)


def test_callback_progress_bar_and_a_continued_generator(model, capsys):
    seen: list[int] = []
    g = torch.Generator().manual_seed(9)
    a = text_to_image(model, PROMPT, 1, 4, seed=g, callback=lambda d: seen.append(d["k"]))
    assert seen == pipeline_timesteps(model.pipe.scheduler, 4) and "stage I" in capsys.readouterr().err
    b = text_to_image(model, PROMPT, 1, 4, seed=torch.Generator().manual_seed(9), progress=False)
    assert torch.equal(a, b) and not torch.equal(a, text_to_image(model, PROMPT, 1, 4, seed=g, progress=False))


def _png(path) -> torch.Tensor:
    """(3, H, W) pixel values 0..255 of a PNG."""
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float()


def test_part0_command_writes_the_pipelines_images(tmp_path, monkeypatch, capsys, pipe1, pipe2, emb):
    """`fundiff generate --steps-1 5 --steps-2 2`: sample_00.png is IFPipeline's image and sample_256.png
    IFSuperResolutionPipeline's of it (default guidance 7 and 4, seed 7 for each stage), to a PNG level."""
    tiny = tiny_if()
    code, _, err = fundiff_in_process(monkeypatch, capsys, "generate", "--model", tiny.stage1, "--stage-2",
                                      tiny.stage2, "--cache", tiny.cache, "--prompt", PROMPT, "--steps-1", 5,
                                      "--steps-2", 2, "--n", 1, "--seed", 7, "--out", tmp_path / "p0")
    assert code == 0, err
    assert "stage I" in err and "stage II" in err
    args = json.loads((tmp_path / "p0" / "args.json").read_text())
    assert args["args"]["path"] == "IFPipeline" and args["steps_2"] == 2
    low = _stage1_ref(pipe1, emb, [PROMPT], 1, 5, 7.0, 7)
    high = _stage2_ref(pipe2, emb, _unit(low), 2, 4.0, 7)
    for name, ref in [("sample_00.png", low), ("sample_256.png", high)]:
        assert (_png(tmp_path / "p0" / name) - _unit(ref)[0] * 255).abs().max() <= 1.0, name
